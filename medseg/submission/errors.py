"""The error raised when a submission cannot be prepared."""

from __future__ import annotations

from medseg.errors import MedsegError


class SubmissionError(MedsegError):
    """A submission could not be prepared or read; ``problems`` holds one line per problem.

    The message is a summary line followed by the problems, one per line, each naming the
    case (or file) and what is wrong.
    """

    def __init__(self, summary: str, problems: list[str] | None = None) -> None:
        self.summary = summary
        self.problems = list(problems or [])
        text = summary if not self.problems else summary + "\n" + "\n".join(f"  {p}" for p in self.problems)
        super().__init__(text)
