"""The named errors of captchafarm; every one ends in ...Error and says what to do."""


class FarmError(Exception):
    """Base of every captchafarm error."""


class CheckpointError(FarmError):
    """A checkpoint is missing, corrupt, or was made for another model or charset."""


class StoreError(FarmError):
    """The object store could not be reached or refused an operation."""


class ConflictError(StoreError):
    """A conditional write lost a race: somebody else wrote first."""


class PoolError(FarmError):
    """A pool is missing, incomplete, or its arguments do not fit."""


class AnswersError(FarmError):
    """An answers file as a whole cannot be ingested (unreadable, or over a size limit)."""


class JobError(FarmError):
    """A farm job cannot be submitted or followed, or one of its shards gave up."""
