"""Curves over commits: the history's records grouped into one series per (dataset, model, metric
identity) and, for speed figures, per machine; each series split into pieces wherever the protocol changes.

Commits are ordered by their committer date (the run's date when unknown), then by the run's date. A
series has at most one point per commit: when several record sets hold it, the newest run wins, as
in a results directory. A point's **signature** is its protocol plus its unit, estimator and direction:
consecutive points with equal signatures form one piece of the curve; a change starts a new piece,
which charts draw apart and step detection never bridges.

Speed figures are per machine (its fingerprint id), or, with ``normalise``, scaled to a reference
machine by the runs' calibrations (:func:`harness.machine.speed_factor`): a rate divided by the speed
factor, a duration multiplied by it, as the regression gate does. The reference is the newest machine
with a calibration on the same device type. Figures that do not scale with machine speed, or whose
machine has no calibration, stay per machine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

from harness.contracts import UserError
from harness.history.format import instant

SPEED_ROLE = "speed"
RATE, DURATION = "rate", "duration"


@dataclass(frozen=True)
class SeriesKey:
    dataset: str
    model: str
    id: str
    machine: Optional[str] = None  # a speed figure's machine; None for quality and normalised speed

    def label(self) -> str:
        where = f" on machine {self.machine}" if self.machine else ""
        return f"{self.model} / {self.dataset} / {self.id}{where}"


@dataclass
class CommitInfo:
    sha: str
    date: Optional[str]  # the committer date; the run's date where the history does not know it
    subject: Optional[str]
    position: int

    @property
    def short(self) -> str:
        return self.sha[:10]


@dataclass
class Point:
    position: int  # the commit's place in History.commits
    commit: str
    mean: float
    stderr: Optional[float]
    n_seeds: int
    signature: str
    record: dict
    factor: Optional[float] = None  # the speed factor a normalised figure was scaled by


@dataclass
class Series:
    key: SeriesKey
    points: list = field(default_factory=list)  # Point, by position

    @property
    def latest(self) -> dict:
        return self.points[-1].record

    @property
    def higher_is_better(self) -> Optional[bool]:
        return self.latest.get("higher_is_better")

    @property
    def is_speed(self) -> bool:
        return self.latest.get("role") == SPEED_ROLE

    def pieces(self) -> list:
        """Runs of consecutive points with one signature (lists of Point), oldest first."""
        out = []
        for p in self.points:
            if out and out[-1][-1].signature == p.signature:
                out[-1].append(p)
            else:
                out.append([p])
        return out

    def protocol_changes(self) -> list:
        """``(position, {field: (before, after)})`` for every point that starts a new piece."""
        changes = []
        pieces = self.pieces()
        for before, after in zip(pieces, pieces[1:]):
            a, b = json.loads(before[-1].signature), json.loads(after[0].signature)
            diff = {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
            changes.append((after[0].position, diff))
        return changes


@dataclass
class History:
    sets: list  # RecordSet, in curve order
    commits: list  # CommitInfo, in curve order
    series: dict  # SeriesKey -> Series
    normalised_to: dict = field(default_factory=dict)  # device type -> reference machine id

    def position(self, name: str, date: Optional[str] = None) -> int:
        """The place of the commit ``name`` (a full hash or a prefix of at least 4 characters); for a commit
        the history does not hold, the place of the last commit up to its ``date`` (committer date), if given."""
        found = [c for c in self.commits if len(name) >= 4 and c.sha.startswith(name)]
        if len(found) == 1:
            return found[0].position
        if not found and date is not None:
            return max((c.position for c in self.commits if instant(c.date) <= instant(date)), default=-1)
        raise UserError(f"commit {name!r} is {'ambiguous' if found else 'not'} in the history "
                        f"({len(self.commits)} commits)")

    def datasets(self) -> list:
        return sorted({k.dataset for k in self.series})


def signature(record: dict) -> str:
    """What two points must share to be joined: the protocol, unit, estimator and direction."""
    return json.dumps({**(record.get("protocol") or {}), "unit": record.get("unit"),
                       "estimator": record.get("estimator"), "higher_is_better": record.get("higher_is_better")},
                      sort_keys=True, default=str)


def _references(sets: list) -> dict:
    """device type -> (machine id, calibration): the newest calibrated machine of each device type."""
    refs = {}
    for s in sets:  # oldest first: newer sets replace
        for mid, machine in s.machines.items():
            if machine.get("calibration"):
                refs[(machine.get("fingerprint") or {}).get("device")] = (mid, machine["calibration"])
    return refs


def _normalised(record: dict, machines: dict, refs: dict) -> Optional[tuple]:
    """(mean, stderr, factor) scaled to the reference machine, or None when the figure stays per machine."""
    from harness.machine import speed_factor

    if record.get("scaling") not in (RATE, DURATION) or not record.get("machine"):
        return None
    machine = machines.get(record["machine"]) or {}
    ref = refs.get((machine.get("fingerprint") or {}).get("device"))
    factor = speed_factor(ref[1], machine.get("calibration")) if ref else None
    if factor is None:
        return None
    scale = 1.0 / factor.factor if record["scaling"] == RATE else factor.factor
    se = record.get("stderr")
    return record["mean"] * scale, None if se is None else se * scale, factor.factor


def build(sets: list, normalise: bool = False) -> History:
    """The history's curves from its record sets (see the module docstring)."""
    ordered = sorted(sets, key=lambda s: s.order)
    commits: dict = {}
    for s in ordered:
        if s.commit not in commits:
            commits[s.commit] = CommitInfo(s.commit, s.commit_date or s.date, s.subject, len(commits))
    refs = _references(ordered) if normalise else {}
    chosen: dict = {}  # (key, position) -> Point; later sets replace earlier ones
    for s in ordered:
        pos = commits[s.commit].position
        for rec in s.records:
            speed = rec.get("role") == SPEED_ROLE
            scaled = _normalised(rec, s.machines, refs) if speed and normalise else None
            machine = rec.get("machine") if speed and scaled is None else None
            mean, se, factor = scaled or (float(rec["mean"]), rec.get("stderr"), None)
            key = SeriesKey(rec["dataset"], rec["model"], rec["id"], machine)
            chosen[(key, pos)] = Point(pos, s.commit, mean, se, int(rec.get("n_seeds") or 1), signature(rec), rec,
                                       factor)
    series: dict = {}
    for (key, _), point in sorted(chosen.items(), key=lambda kv: kv[0][1]):
        series.setdefault(key, Series(key)).points.append(point)
    return History(ordered, list(commits.values()), dict(sorted(series.items(), key=lambda kv: _sort_key(kv[0]))),
                   {dev: mid for dev, (mid, _) in refs.items()})


def _sort_key(key: SeriesKey) -> tuple:
    return (key.dataset, key.id, key.model, key.machine or "")
