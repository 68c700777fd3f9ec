"""The named errors of captchafarm, every one here: each says what is wrong and what to do.

    FarmError                      what a user can fix; `farm` prints it as `Error: <message>`, exit 1
    ├── SettingError (ValueError)  a value given is malformed or out of range; the message names it first
    ├── CheckpointError            a checkpoint missing, corrupt, or for another model or charset
    │   └── HeldOutError           a held-out zoo solver asked to serve as a substitute
    ├── StoreError                 the object store unreachable or refusing
    │   └── ConflictError          a conditional write lost a race
    │       └── SwitchLostError    CURRENT moved while switching to a new version (it stays stored)
    ├── SchemeError                a scheme plugin that does not load or fit
    ├── PoolError                  a pool missing, incomplete, or arguments that do not fit it
    ├── AnswersError               an answers file that cannot be ingested as a whole
    ├── JobError                   a farm job that cannot be submitted or followed
    ├── DataError (ValueError)     a labelled folder that cannot be used
    ├── StudyError                 a usability study missing, existing, or over pools that cannot serve it
    ├── FinetuneRefused            the fine-tune guard refused the model (a verdict: carries the result)
    └── TicketError                a captcha id the service cannot verify
        ├── UnknownTicketError
        ├── ExpiredTicketError
        └── UsedTicketError

Anything else that escapes is a bug, and `farm` shows its traceback; that is why validation raises
SettingError, never a bare ValueError (which a bug raises too). SettingError and DataError are
also ValueErrors, so code that checks values with `except ValueError` (the service's 400s, the
workers' task arguments) catches them as before.
"""


class FarmError(Exception):
    """Base of every captchafarm error."""


class SettingError(FarmError, ValueError):
    """A value given to captchafarm is malformed or out of range: an option or argument, an environment
    variable, a field of a config, a task or a request. The message starts with its name (`count: must
    be ...`, `FARM_SECRET: not set; ...`) and says what fits."""


class CheckpointError(FarmError):
    """A checkpoint is missing, corrupt, or was made for another model or charset."""


class HeldOutError(CheckpointError):
    """A held-out solver was asked for as a substitute."""


class StoreError(FarmError):
    """The object store could not be reached or refused an operation."""


class ConflictError(StoreError):
    """A conditional write lost a race: somebody else wrote first."""


class SwitchLostError(ConflictError):
    """CURRENT moved while switching to a new version: `version` is stored, unpromoted."""

    def __init__(self, message: str, version: str):
        super().__init__(message)
        self.version = version


class SchemeError(FarmError):
    """A captcha scheme is broken: a plugin that does not load or does not fit, or a draw of the wrong shape."""


class PoolError(FarmError):
    """A pool is missing, incomplete, or its arguments do not fit."""


class AnswersError(FarmError):
    """An answers file as a whole cannot be ingested (unreadable, or over a size limit)."""


class JobError(FarmError):
    """A farm job cannot be submitted or followed, or one of its shards gave up."""


class DataError(FarmError, ValueError):
    """A labelled folder (or a pool source made from one) cannot be used: the message names the files."""


class StudyError(FarmError):
    """A usability study is missing, already exists, or names pools that cannot serve it."""


class FinetuneRefused(FarmError):
    """The fine-tuned model failed the guard: nothing was promoted (`result["version"]`: the one kept, if any).

    Named for the verdict, not ...Error: the result it carries is the fine-tune's report.
    """

    def __init__(self, message: str, result: dict):
        super().__init__(message)
        self.result = result


class TicketError(FarmError):
    """A captcha id the service issued cannot be verified; the subclass says why."""


class UnknownTicketError(TicketError):
    """The id was never issued by this service (to this platform)."""


class ExpiredTicketError(TicketError):
    """The id outlived its time to live before it was verified."""


class UsedTicketError(TicketError):
    """The id was verified already: a captcha is good for one verify."""
