"""When a scheduled job is due, and the stable key of each period, in the job's own time zone.

Pure arithmetic for the job runner: the caller passes `now`; claiming a `(job, period_key)` row so a
period runs exactly once is the database's business.

A schedule is "daily HH:MM", "weekly <weekday> HH:MM", a 5-field cron expression ("0 9 * * 1") or an
alias (@hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually). All are evaluated on the
local wall clock of the job's time zone, with these rules on daylight-saving days:

* a wall time that does not exist (02:30 on a spring-forward day) fires once, at the first instant
  after it (03:00 local in Europe/Berlin); several such wall times (an hourly job's 02:00 and the
  03:00 after it) make one firing;
* a wall time that happens twice (02:30 on a fall-back day) fires once, at its first occurrence;
* every other wall time fires at the one instant it names.

croniter walks the wall clock on naive datetimes, and this module maps wall times to instants itself.
croniter's own time-zone handling, given an aware start, fires repeated wall times twice on fall-back
days, which would run a daily 02:30 job twice; the naive walk plus the mapping below cannot.

The mapping from wall times to instants is non-decreasing, so firings come out in order, and the local
wall times of distinct firings strictly increase: period keys sort like the firings they name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterBadDateError, CroniterError

LOOKBACK: Final = timedelta(days=400)
"""last_fire looks this far back, no further."""

NEVER_FIRES_HORIZON: Final = timedelta(days=5 * 365 + 2)
"""A schedule must fire within 5 years of the check's start, or it is rejected as never firing."""

NEVER_FIRES_REFERENCE: Final = datetime(2026, 1, 1, tzinfo=UTC)
"""Where the never-fires check starts when parse_schedule is not given `now`."""

_WEEKDAYS: Final = {
    "sun": 0, "sunday": 0, "mon": 1, "monday": 1, "tue": 2, "tuesday": 2, "wed": 3, "wednesday": 3,
    "thu": 4, "thursday": 4, "fri": 5, "friday": 5, "sat": 6, "saturday": 6,
}
_ALIASES: Final = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
# Words a cron field may contain: month and day names, L (last) and W (nearest weekday). croniter's
# R (random) and H (hashed) would make firings, and so period keys, differ between processes.
_CRON_WORDS: Final = frozenset(
    {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
     "sun", "mon", "tue", "wed", "thu", "fri", "sat", "l", "w"}
)
_TIME_RE: Final = re.compile(r"(\d{1,2}):(\d{2})")


class ScheduleError(ValueError):
    """A schedule or time zone in the configuration that cannot be used; the message says why."""


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")


def _parse_time(text: str) -> tuple[int, int]:
    match = _TIME_RE.fullmatch(text)
    if match is None or int(match[1]) > 23 or int(match[2]) > 59:
        raise ScheduleError(f"time {text!r} is not HH:MM")
    return int(match[1]), int(match[2])


def _weekday(text: str) -> int:
    day = _WEEKDAYS.get(text.lower())
    if day is None:
        raise ScheduleError(f"unknown weekday {text!r}")
    return day


def to_cron(text: str) -> str:
    """The 5-field cron expression a schedule's text stands for; ScheduleError if it stands for none.

    Checks the form only; parse_schedule also rejects an expression that never fires.
    """
    words = text.split()
    if not words:
        raise ScheduleError("empty schedule")
    head = words[0].lower()
    if head == "daily":
        if len(words) != 2:
            raise ScheduleError(f"schedule {text!r} is not 'daily HH:MM'")
        hour, minute = _parse_time(words[1])
        return f"{minute} {hour} * * *"
    if head == "weekly":
        if len(words) != 3:
            raise ScheduleError(f"schedule {text!r} is not 'weekly <weekday> HH:MM'")
        day = _weekday(words[1])
        hour, minute = _parse_time(words[2])
        return f"{minute} {hour} * * {day}"
    if head.startswith("@"):
        if len(words) != 1 or head not in _ALIASES:
            raise ScheduleError(f"unknown schedule alias {text.strip()!r} (known: {', '.join(_ALIASES)})")
        return _ALIASES[head]
    if len(words) != 5:
        raise ScheduleError(
            f"schedule {text!r} is neither 'daily HH:MM', 'weekly <weekday> HH:MM' nor a cron expression "
            f"of 5 fields (minute hour day-of-month month day-of-week); it has {len(words)}"
        )
    expression = " ".join(words)
    for word in re.findall(r"[a-z]+", expression.lower()):
        if word not in _CRON_WORDS:
            raise ScheduleError(f"cron expression {text!r}: unsupported word {word!r}")
    try:
        croniter.expand(expression)
    except CroniterError as exc:
        raise ScheduleError(f"invalid cron expression {text!r}: {exc}") from exc
    return expression


@dataclass(frozen=True)
class Schedule:
    """A job's schedule: its text as configured and the time zone its wall clock is read in."""

    text: str
    tz: ZoneInfo
    cron: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cron", to_cron(self.text))

    # ---- wall clock <-> instants ------------------------------------------------------------------

    def _wall(self, instant: datetime) -> datetime:
        """The local wall time of an instant, naive."""
        return instant.astimezone(self.tz).replace(tzinfo=None)

    def _instant(self, wall: datetime) -> datetime:
        """The instant (aware UTC) a wall time fires at: itself, its first occurrence, or its gap's end."""
        utc = wall.replace(tzinfo=self.tz, fold=0).astimezone(UTC)
        if self._wall(utc) == wall:
            return utc  # exists; fold=0 is the first of two occurrences
        # In a gap: fold=0 reads the wall time with the offset from before the transition, which lands
        # after it; fold=1 with the offset from after, which lands before. The first instant whose wall
        # time is past `wall` is the transition; transitions fall on whole seconds.
        lo, hi = wall.replace(tzinfo=self.tz, fold=1).astimezone(UTC), utc
        if lo > hi:
            lo, hi = hi, lo
        second = timedelta(seconds=1)
        while hi - lo > second:
            mid = lo + second * (((hi - lo) // second) // 2)
            if self._wall(mid) > wall:
                hi = mid
            else:
                lo = mid
        return hi

    # ---- firings ----------------------------------------------------------------------------------

    def fire_times(self, start: datetime, end: datetime) -> list[datetime]:
        """Every firing in (start, end], as aware UTC datetimes, in order."""
        _require_aware(start, "start")
        _require_aware(end, "end")
        fires: list[datetime] = []
        if end <= start:
            return fires
        # The wall time of `start` maps to an instant at or before `start`, so no firing after it is
        # missed; the few candidates that map to or before `start` (a repeated hour) are skipped.
        walk = croniter(self.cron, self._wall(start))
        while True:
            try:
                wall: datetime = walk.get_next(datetime)
            except CroniterBadDateError:
                return fires
            fire = self._instant(wall)
            if fire > end:
                return fires
            if fire > start and (not fires or fire != fires[-1]):
                fires.append(fire)

    def next_fire(self, now: datetime) -> datetime:
        """The first firing after `now` (aware UTC)."""
        _require_aware(now, "now")
        walk = croniter(self.cron, self._wall(now))
        while True:
            try:
                wall: datetime = walk.get_next(datetime)
            except CroniterBadDateError as exc:
                raise ScheduleError(f"schedule {self.text!r} never fires after {now.isoformat()}") from exc
            fire = self._instant(wall)
            if fire > now:
                return fire

    def last_fire(self, now: datetime) -> datetime | None:
        """The latest firing at or before `now` (aware UTC); None if there was none in the last 400 days."""
        _require_aware(now, "now")
        local = now.astimezone(self.tz)
        ceiling = local.replace(tzinfo=None)
        if local.fold:
            # The second pass through a repeated hour: wall times up to the size of the repeat later
            # than now's already fired, in their first occurrence.
            first_offset, offset = local.replace(fold=0).utcoffset(), local.utcoffset()
            if first_offset is not None and offset is not None:
                ceiling += first_offset - offset
        # Candidates are whole minutes, and get_prev is exclusive: start just past the ceiling's minute.
        start = ceiling.replace(second=0, microsecond=0) + timedelta(minutes=1)
        years = LOOKBACK.days // 365 + 1
        walk = croniter(self.cron, start, max_years_between_matches=years)
        while True:
            try:
                wall: datetime = walk.get_prev(datetime)
            except CroniterBadDateError:
                return None
            fire = self._instant(wall)
            if fire <= now:
                return fire if now - fire <= LOOKBACK else None

    def period_key(self, fire: datetime) -> str:
        """The stable id of the period a firing opens: its local wall time with offset, e.g.
        "2026-11-23T09:00+01:00".

        ValueError if `fire` is not a firing of this schedule (a key made from `now` would be new on
        every call, and the job would run every time).
        """
        _require_aware(fire, "fire")
        if self.last_fire(fire) != fire:
            raise ValueError(f"{fire.isoformat()} is not a firing of schedule {self.text!r}")
        return fire.astimezone(self.tz).isoformat(timespec="minutes")


def parse_schedule(text: str, timezone: str, *, now: datetime | None = None) -> Schedule:
    """A job's schedule from its configuration; ScheduleError naming what is wrong.

    Rejects a schedule that does not fire within 5 years of `now` (of 2026-01-01 when not given) —
    a cron expression such as "0 0 30 2 *" that never fires.
    """
    try:
        tz = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(f"unknown time zone {timezone!r}") from exc
    schedule = Schedule(text, tz)
    start = NEVER_FIRES_REFERENCE if now is None else now
    _require_aware(start, "now")
    try:
        first: datetime | None = schedule.next_fire(start)
    except ScheduleError:
        first = None
    if first is None or first - start > NEVER_FIRES_HORIZON:
        raise ScheduleError(f"cron expression {text!r} never fires")
    return schedule


def due(schedule: Schedule, now: datetime, *, grace: timedelta) -> datetime | None:
    """The firing due at `now`: the latest at or before it, if no more than `grace` ago; else None.

    A job missed while the bot was down runs once when it comes back within the grace; a period
    missed by more than the grace is skipped, not run late.
    """
    _require_aware(now, "now")
    if grace < timedelta(0):
        raise ValueError(f"grace must not be negative, got {grace}")
    fire = schedule.last_fire(now)
    if fire is None or now - fire > grace:
        return None
    return fire
