"""The digest chart is a real PNG that shows the data it was given, and Poster.upload shares it in Slack."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image
from slack_sdk import WebClient

from bot.charts import digest_chart
from bot.errors import ChannelUnavailable
from bot.slack.blocks import Reply, section
from integrations.slack_client import Poster
from tests.fakes.slack_api import FakeSlack, SharedFile

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RED, YELLOW, GREEN = (0xD6, 0x45, 0x45), (0xE8, 0xB7, 0x30), (0x2E, 0x9E, 0x5B)  # at risk, watch, healthy
GRR_BLUE, NRR_PURPLE = (0x1F, 0x77, 0xB4), (0x94, 0x67, 0xBD)
TREND = [("Jan", 92.0, 104.5), ("Feb", 91.5, None), ("Mar", None, 103.0), ("Apr", 93.0, 106.0)]


def chart(scores: Sequence[int] = (12, 45, 55, 71, 88, 100), trend: Sequence = TREND, **kw: object) -> bytes:
    args: dict = {"healthy": 70, "watch": 40, "title": "Portfolio digest", **kw}
    return digest_chart(scores, trend=trend, **args)


def size_from_header(png: bytes) -> tuple[int, int]:
    assert png[:8] == PNG_SIGNATURE
    assert png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def pixels(png: bytes) -> dict[tuple[int, int, int], int]:
    """How many pixels of each RGB colour the decoded image has (decoding fully: a corrupt PNG fails)."""
    with Image.open(io.BytesIO(png)) as image:
        rgb = np.asarray(image.convert("RGB")).reshape(-1, 3)
    found, counts = np.unique(rgb, axis=0, return_counts=True)
    return {(int(r), int(g), int(b)): int(n) for (r, g, b), n in zip(found, counts, strict=True)}


def bars(png: bytes) -> set[tuple[int, int, int]]:
    """The band colours drawn as bars: more pixels than the legend's swatch (about 25 x 9) alone has."""
    seen = pixels(png)
    return {colour for colour in (RED, YELLOW, GREEN) if seen.get(colour, 0) > 1000}


def colours(png: bytes) -> set[tuple[int, int, int]]:
    return set(pixels(png))


def test_the_chart_is_a_1200_by_500_png() -> None:
    png = chart()

    assert png.startswith(PNG_SIGNATURE)
    assert size_from_header(png) == (1200, 500)
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and image.size == (1200, 500)
        assert "Software" not in image.info  # no matplotlib version baked into the bytes


def test_the_bars_are_coloured_by_band_and_both_retention_lines_are_drawn() -> None:
    png = chart()
    assert bars(png) == {RED, YELLOW, GREEN}
    assert {GRR_BLUE, NRR_PURPLE} <= colours(png)

    assert bars(chart(scores=[95, 99, 100, 72], trend=[])) == {GREEN}
    assert bars(chart(scores=[0, 39, 5], trend=[])) == {RED}


def test_a_bucket_cut_by_a_threshold_shows_both_bands() -> None:
    # 40-49 holds 44 (at risk, below watch=45) and 46 (watch): one stacked bar, two colours.
    assert bars(chart(scores=[44, 46], healthy=75, watch=45, trend=[])) == {RED, YELLOW}


def test_equal_inputs_give_identical_bytes_and_other_inputs_do_not() -> None:
    assert chart() == chart()
    assert chart() != chart(scores=[12, 45, 55, 71, 88, 100, 100])
    assert chart() != chart(trend=TREND[:3])
    assert chart() != chart(title="Another week")


def test_charts_drawn_in_parallel_threads_match_one_drawn_alone() -> None:
    alone = chart()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: chart(), range(8)))
    assert all(result == alone for result in results)


@pytest.mark.parametrize(
    ("scores", "trend"),
    [
        ([], []),
        ([], [("Jan", None, None), ("Feb", None, None)]),
        ([50, 60], []),
        ([], TREND),
    ],
    ids=["nothing", "all-none-trend", "no-trend", "no-scores"],
)
def test_missing_data_still_gives_a_valid_png(scores: list[int], trend: list) -> None:
    png = chart(scores=scores, trend=trend)

    assert size_from_header(png) == (1200, 500)
    seen = colours(png)  # decodes
    if not scores:
        assert not {RED, YELLOW, GREEN} & seen  # no bars, no legend: the panel says "no data"
    if all(g is None and n is None for _, g, n in trend):
        assert not {GRR_BLUE, NRR_PURPLE} & seen


def test_a_lone_period_between_gaps_is_still_visible() -> None:
    seen = colours(chart(scores=[], trend=[("Jan", None, None), ("Feb", 97.0, None), ("Mar", None, None)]))
    assert GRR_BLUE in seen and NRR_PURPLE not in seen


def test_100_000_scores_chart_quickly() -> None:
    scores = np.random.default_rng(7).integers(0, 101, 100_000).tolist()
    chart(scores=scores[:10])  # matplotlib's import and font loading are not what this measures
    started = time.perf_counter()
    png = chart(scores=scores)
    elapsed = time.perf_counter() - started
    assert size_from_header(png) == (1200, 500)
    assert elapsed < 3.0, f"100,000 scores took {elapsed:.2f}s"


def test_drawing_never_imports_pyplot() -> None:
    code = (
        "import sys; from bot.charts import digest_chart; "
        "digest_chart([1, 50, 90], healthy=70, watch=40, trend=[('Jan', 95.0, 101.0)], title='t'); "
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# uploading --------------------------------------------------------------------------------------


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(channels={"C0DIGEST", "C0OTHER"}) as fake:
        yield fake


class Clock:
    """A clock that only moves when the poster sleeps, so pacing shows up as recorded sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def poster_for(fake: FakeSlack, clock: Clock | None = None) -> Poster:
    client = WebClient(token="xoxb-test", base_url=fake.api_url)
    if clock is None:
        return Poster(client)
    return Poster(client, clock=clock, sleep=clock.sleep)


def test_upload_shares_the_chart_in_the_digest_thread(slack: FakeSlack) -> None:
    png = chart()
    poster = poster_for(slack)
    ts = poster.post("C0DIGEST", Reply("Weekly portfolio digest", [section("*Weekly portfolio digest*")]))

    file_id = poster.upload("C0DIGEST", png, filename="digest.png", title="Portfolio health",
                            thread_ts=ts, comment="Health and retention this week")

    assert slack.shared == [
        SharedFile(file_id, "digest.png", "Portfolio health", png, ["C0DIGEST"],
                   thread_ts=ts, initial_comment="Health and retention this week")
    ]
    assert slack.uploads == {file_id: png}


def test_upload_without_thread_or_comment_goes_to_the_channel_itself(slack: FakeSlack) -> None:
    file_id = poster_for(slack).upload("C0OTHER", b"\x89PNG tiny", filename="c.png", title="Chart")

    [shared] = slack.shared
    assert (shared.id, shared.channels, shared.title, shared.content) == (file_id, ["C0OTHER"], "Chart",
                                                                          b"\x89PNG tiny")
    assert shared.thread_ts is None and shared.initial_comment is None


def test_upload_to_a_channel_the_bot_is_not_in_raises_channel_unavailable(slack: FakeSlack) -> None:
    with pytest.raises(ChannelUnavailable, match="C0NOTJOINED"):
        poster_for(slack).upload("C0NOTJOINED", chart(), filename="digest.png", title="Portfolio health")
    assert slack.shared == []


def test_a_channel_that_goes_away_raises_channel_unavailable(slack: FakeSlack) -> None:
    poster = poster_for(slack)
    poster.upload("C0DIGEST", b"one", filename="a.png", title="A")
    slack.fail("files.completeUploadExternal", error="is_archived")

    with pytest.raises(ChannelUnavailable, match="is_archived"):
        poster.upload("C0DIGEST", b"two", filename="b.png", title="B")
    assert [f.content for f in slack.shared] == [b"one"]


def test_uploads_share_the_per_channel_pace_with_posts(slack: FakeSlack) -> None:
    clock = Clock()
    poster = poster_for(slack, clock)

    poster.post("C0DIGEST", Reply("digest", [section("digest")]))
    poster.upload("C0OTHER", b"x", filename="x.png", title="X")  # another channel: no wait
    assert clock.slept == []
    poster.upload("C0DIGEST", b"y", filename="y.png", title="Y")  # same channel, right after the post
    assert clock.slept == [pytest.approx(1.0)]
    assert [(f.channels, f.content) for f in slack.shared] == [(["C0OTHER"], b"x"), (["C0DIGEST"], b"y")]
