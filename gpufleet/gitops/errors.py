"""The GitOps boundary's one exception family."""


class GitOpsError(RuntimeError):
    """GitOps could not be set up or a Git operation failed; the message says which step and what to do."""
