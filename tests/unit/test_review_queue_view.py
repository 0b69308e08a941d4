"""The queue page's links, SLA marks and names (triage_review_ui.domain), without I/O."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

from tests.helpers import RECEIVED_AT
from triage_review_ui.domain import QueueView, hours_text, part_state, shown_name, sla
from triage_review_ui.queries import MailPart, QueueFilter, QueueOrder, SortKey


def _view(offset: int = 0, order: QueueOrder | None = None) -> QueueView:
    return QueueView(
        flt=QueueFilter(
            reason="low_confidence",
            label="a&b #1",
            source="imap",
            min_age_hours=2.5,
            search='"double charge" -late',
        ),
        order=order or QueueOrder(),
        offset=offset,
        page_size=10,
    )


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def test_every_link_keeps_every_filter_url_encoded() -> None:
    view = _view(offset=20, order=QueueOrder(SortKey.NAME, descending=True))
    kept = {
        "q": ['"double charge" -late'],
        "reason": ["low_confidence"],
        "label": ["a&b #1"],
        "source": ["imap"],
        "age": ["2.5"],
    }
    for url in (view.page_url(5), view.sorted_by("due"), view.narrowed(source="smtp")):
        query = _query(url)
        for name, value in kept.items():
            if name != "source" or "smtp" not in url:
                assert query[name] == value, (url, name)
    assert _query(view.page_url(5))["offset"] == ["40"]
    assert _query(view.page_url(5))["sort"] == ["name"]
    assert "offset" not in _query(view.page_url(1)), "page 1 has no offset"
    assert "offset" not in _query(view.narrowed(source="smtp")), "a new filter starts at page 1"


def test_sort_headers_reverse_the_current_column_and_start_others_ascending() -> None:
    by_name = _view(order=QueueOrder(SortKey.NAME))
    assert _query(by_name.sorted_by("name"))["dir"] == ["desc"]
    assert by_name.sort_state("name") == "ascending" and by_name.sort_state("due") == "none"
    back_to_due = _query(by_name.sorted_by("due"))
    assert "sort" not in back_to_due, "the default order is left out of the address"


def test_page_numbers_show_both_ends_and_the_neighbourhood() -> None:
    assert _view(offset=50).page == 6
    assert _view(offset=50).page_numbers(200) == [1, None, 4, 5, 6, 7, 8, None, 20]
    assert _view().page_numbers(0) == [1]
    assert _view().pages(31) == 4


def test_sla_marks_overdue_and_due_soon() -> None:
    now = RECEIVED_AT
    soon = timedelta(hours=2)
    assert sla(now - timedelta(seconds=1), soon, now) == "overdue"
    assert sla(now + timedelta(hours=2), soon, now) == "due soon"
    assert sla(now + timedelta(hours=2, seconds=1), soon, now) is None


def test_an_item_is_called_by_its_file_name_else_its_subject() -> None:
    assert shown_name(SimpleNamespace(filename="a.pdf", email_subject="Hi")) == "a.pdf"
    assert shown_name(SimpleNamespace(filename=None, email_subject="Invoice 7")) == "Invoice 7"
    assert shown_name(SimpleNamespace(filename=None, email_subject="  ")) == "(no name)"
    assert hours_text(10.0) == "10" and hours_text(0.5) == "0.5" and hours_text(None) == ""


def _part(status: str, queue: str | None = None, **item: str | int | None) -> MailPart:
    return MailPart("doc_" + "0" * 32, "a.pdf", "application/pdf", False, status, queue, **item)  # type: ignore[arg-type]


def test_a_mail_part_reads_as_its_review_item_first_then_as_it_was_routed() -> None:
    assert part_state(_part("routed", "billing")) == "routed to billing"
    assert part_state(_part("decided", "legal")) == "routed to legal by a reviewer"
    assert part_state(_part("received")) == "not scored yet"
    assert part_state(_part("dead_lettered")) == "dead-lettered"
    assert part_state(_part("discarded")) == "discarded"
    # A blind quality sample is routed and has an open item: it reads as any item in review.
    assert part_state(_part("routed", "billing", item_id=7, item_status="pending")) == "in review"
    assert part_state(_part("routed", "billing", item_id=7, item_status="claimed")) == "in review"
    decided = _part("decided", "legal", item_id=7, item_status="decided", decided_label="legal")
    assert part_state(decided) == "decided: legal"
    spam = _part("discarded", item_id=7, item_status="decided", decision_kind="spam")
    assert part_state(spam) == "decided: spam"
