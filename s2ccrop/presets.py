"""Named aspect-ratio presets, preset groups and the default set used when no ``--ratio`` is given.

A ``--ratio`` value is resolved in this order: a preset name (``phone``), a group name (``devices``,
expands to several ratios), then anything `Ratio.parse` accepts (``16:9``, ``1.91:1``, ``4x5``, ``any``).
Resolution never imports torch: the command line uses it before the model loads.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError
from .types import Ratio


@dataclass(frozen=True)
class Preset:
    name: str
    ratio: str
    use: str


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("any", "any", "the best free-form crop (no fixed ratio)"),
        Preset("square", "1:1", "avatars, Instagram square posts"),
        Preset("portrait", "4:5", "Instagram portrait posts"),
        Preset("phone", "9:16", "phone wallpaper / lock screen"),
        Preset("story", "9:16", "Instagram/TikTok stories, reels, shorts"),
        Preset("tablet", "3:4", "tablet held upright, 4:3 portrait prints"),
        Preset("tablet-landscape", "4:3", "tablet held sideways, classic displays"),
        Preset("photo", "3:2", "35 mm / DSLR frame, 6x4 prints"),
        Preset("laptop", "16:10", "16:10 laptop screens"),
        Preset("desktop", "16:9", "desktop wallpaper, TV, video thumbnails"),
        Preset("ultrawide", "21:9", "ultrawide monitors"),
        Preset("og", "1.91:1", "Open Graph / link previews"),
        Preset("cinema", "2.39:1", "cinemascope"),
        Preset("banner", "3:1", "X/Twitter profile header"),
    )
}

# Groups expand to several presets; `default` is what runs when no --ratio is given.
GROUPS: dict[str, tuple[str, ...]] = {
    "default": ("any", "square", "portrait", "desktop", "phone"),
    "devices": ("phone", "tablet", "tablet-landscape", "laptop", "desktop", "ultrawide"),
    "social": ("square", "portrait", "story", "og", "banner"),
}

DEFAULT_RATIOS: tuple[str, ...] = tuple(PRESETS[n].ratio for n in GROUPS["default"])


@dataclass(frozen=True)
class RatioRequest:
    """One requested ratio: its normalised text ("16:9", "any") and the label the user typed."""

    ratio: str
    label: str  # preset name when one was used, else the normalised ratio

    @property
    def slug(self) -> str:
        """File-name form of the ratio: "16:9" -> "16x9", "1.91:1" -> "1.91x1", "any" -> "any"."""
        return self.ratio.replace(":", "x")


def resolve_ratios(values: list[str] | None) -> list[RatioRequest]:
    """Turn --ratio values (presets, groups, W:H) into distinct requests, first occurrence wins."""
    names = list(values) if values else list(GROUPS["default"])
    out: list[RatioRequest] = []
    seen: set[str] = set()
    for value in names:
        for req in _expand(value):
            if req.ratio not in seen:
                seen.add(req.ratio)
                out.append(req)
    return out


def _expand(value: str) -> list[RatioRequest]:
    key = value.strip().lower()
    if key in GROUPS:
        return [_preset(name) for name in GROUPS[key]]
    if key in PRESETS:
        return [_preset(key)]
    try:
        ratio = str(Ratio.parse(value))
    except ConfigError as exc:
        raise ConfigError(f"{exc}, or a preset name ({', '.join(PRESETS)}); see --help") from None
    return [RatioRequest(ratio, ratio)]


def _preset(name: str) -> RatioRequest:
    p = PRESETS[name]
    return RatioRequest(str(Ratio.parse(p.ratio)), p.name)


def preset_table() -> str:
    """The preset and group table as shown by --help."""
    width = max(len(n) for n in PRESETS)
    lines = [f"  {p.name:<{width}}  {p.ratio:<7} {p.use}" for p in PRESETS.values()]
    lines.append("")
    lines += [f"  {g:<{width}}  = {' '.join(members)}" for g, members in GROUPS.items()]
    return "\n".join(lines)
