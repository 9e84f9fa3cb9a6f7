"""Small text helpers shared by the package: the "did you mean" hint and markdown tables."""
import difflib


def did_you_mean(word, choices):
    """``"; did you mean 'x'?"`` for the closest of ``choices`` to ``word``, or '' when none is close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f'; did you mean {close[0]!r}?' if close else ''


def markdown_table(head, rows):
    """A markdown table (list of lines) of ``head`` (column titles) and ``rows`` (lists of cells, any type)."""
    return ['| ' + ' | '.join(str(h) for h in head) + ' |', '|' + '---|' * len(head),
            *('| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows)]
