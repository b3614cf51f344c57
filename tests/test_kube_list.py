"""The adapter lists page by page, as client-go's reflector does, and hands each object on as its
page arrives: one reply of a large cluster's pods was tens of megabytes parsed in one call that
holds the GIL (the webhooks waited), and every pod held as parsed JSON until the last was read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar
from urllib.parse import parse_qs, urlparse

import pytest

from slotwise.server.kube import LIST_PAGE, Expired, Kube
from tests.stub_http import StubHandler, serving

PODS = [{"metadata": {"name": f"p{i}", "namespace": "ns"}} for i in range(2 * LIST_PAGE + 7)]


class Pages(StubHandler):
    """Serves ``PODS`` ``limit`` at a time; a continue token is the offset of the next page."""

    asked: ClassVar[list[dict[str, list[str]]]] = []
    expire: ClassVar[bool] = False

    def do_GET(self) -> None:  # noqa: N802 - the handler's name
        query = parse_qs(urlparse(self.path).query)
        Pages.asked.append(query)
        start = int(query.get("continue", ["0"])[0])
        if start and Pages.expire:
            self.reply(410, {"kind": "Status", "code": 410, "reason": "Expired", "message": "token expired"})
            return
        end = start + int(query["limit"][0])
        self.reply(200, {"kind": "PodList", "items": PODS[start:end],
                         "metadata": {"resourceVersion": "42", **({"continue": str(end)} if end < len(PODS) else {})}})



@pytest.fixture
def api() -> Iterator[str]:
    Pages.asked, Pages.expire = [], False
    with serving(Pages) as url:
        yield url


def test_a_list_reads_every_page_and_keeps_the_lists_version(api):
    listing = Kube.at(api).list("pods", lambda pod: pod["metadata"]["name"])  # read page by page
    assert listing.items == [p["metadata"]["name"] for p in PODS] and listing.resource_version == "42"
    assert [q["limit"] for q in Pages.asked] == [[str(LIST_PAGE)]] * 3
    assert [q.get("continue") for q in Pages.asked] == [None, [str(LIST_PAGE)], [str(2 * LIST_PAGE)]]


def test_a_continue_token_that_expired_means_listing_again(api):
    Pages.expire = True
    with pytest.raises(Expired):
        Kube.at(api).list("pods", dict)
