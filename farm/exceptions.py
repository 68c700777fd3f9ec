"""The named errors of captchafarm; every one ends in ...Error and says what to do."""


class FarmError(Exception):
    """Base of every captchafarm error."""


class CheckpointError(FarmError):
    """A checkpoint is missing, corrupt, or was made for another model or charset."""


class StoreError(FarmError):
    """The object store could not be reached or refused an operation."""


class ConflictError(StoreError):
    """A conditional write lost a race: somebody else wrote first."""


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


class TicketError(FarmError):
    """A captcha id the service issued cannot be verified; the subclass says why."""


class UnknownTicketError(TicketError):
    """The id was never issued by this service (to this platform)."""


class ExpiredTicketError(TicketError):
    """The id outlived its time to live before it was verified."""


class UsedTicketError(TicketError):
    """The id was verified already: a captcha is good for one verify."""
