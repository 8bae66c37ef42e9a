"""The Cassandra format's parameters: defined once, shared by golden/, hw/ and sim/.

Every other part of the project (the golden codec, the Amaranth RTL, the cocotb
testbenches, the command line) takes a :class:`FormatParams` and reads its field
widths from here, so the definition of the bit layout lives in one place.
See docs/FORMAT.md for the normative description.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

__all__ = [
    "BF16_BITS",
    "BF16_EXPONENT_BITS",
    "BF16_MANTISSA_BITS",
    "DEFAULT_PRUNE_RATIO",
    "EXPONENT_CODINGS",
    "FORMAT_OPTIONS",
    "FormatParams",
    "STREAM_NAMES",
    "SPECULATION_STREAMS",
    "VERIFICATION_STREAMS",
    "STREAM_ALIGN_BITS",
    "add_format_arguments",
    "format_params_from_arguments",
    "keep_count",
    "mantissa_bits_kept",
]

BF16_BITS = 16
BF16_MANTISSA_BITS = 7
BF16_EXPONENT_BITS = 8

#: Exponent codings: ``raw`` (8 bits), ``unary`` (Cassandra-1, lossless) and
#: ``mx`` (Cassandra-2, shared exponent for the draft; full decode still exact).
EXPONENT_CODINGS = ("raw", "unary", "mx")
#: How a draft decode fills the truncated mantissa bits of a kept value (docs/FORMAT.md, section 8): ``truncate``
#: zeros (the paper's), ``midpoint`` the middle of the truncated interval. A reader's choice; the streams are the same.
DRAFT_ROUNDINGS = ("truncate", "midpoint")


def check_draft_rounding(rounding, exponent_coding: str | None = None, *, label: str = "draft_rounding") -> None:
    """Raise ``ValueError`` naming ``label`` unless ``rounding`` is one of
    :data:`DRAFT_ROUNDINGS` and (given ``exponent_coding``) defined for that coding:
    ``midpoint`` is defined for raw and unary, not mx."""
    if rounding not in DRAFT_ROUNDINGS:
        raise ValueError(f"{label}={rounding!r} is not one of {DRAFT_ROUNDINGS}")
    if rounding != "truncate" and exponent_coding == "mx":
        raise ValueError(f"{label}={rounding!r} is defined for raw and unary exponent coding, not mx")

#: Streams in container order. The speculation streams come first so that a
#: draft-only reader reads one contiguous prefix of the file.
SPECULATION_STREAMS = ("bitmap", "sign_mantissa", "exponent")
VERIFICATION_STREAMS = ("mantissa_low", "pruned_raw")
STREAM_NAMES = SPECULATION_STREAMS + VERIFICATION_STREAMS

#: Each stream's part of a superblock starts on a 64-bit boundary.
STREAM_ALIGN_BITS = 64

#: An mx verification field for a value whose aligned significand is zero:
#: the raw exponent (8 bits) and the raw mantissa (7 bits).
MX_ESCAPE_BITS = BF16_EXPONENT_BITS + BF16_MANTISSA_BITS

#: The paper's default pruning ratio: 40% of each group goes to the verification data
#: (``keep_count(64, DEFAULT_PRUNE_RATIO) == 38``).
DEFAULT_PRUNE_RATIO = 0.4


def _is_power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


def _check_int(name: str, value, low: int, high: int, *, power_of_two: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if not low <= value <= high:
        raise ValueError(f"{name}={value} is out of range: it must be in {low}..{high}")
    if power_of_two and not _is_power_of_two(value):
        raise ValueError(f"{name}={value} must be a power of two")


@dataclass(frozen=True)
class FormatParams:
    """Parameters of one Cassandra-encoded tensor.

    Parameters
    ----------
    group_size : int
        G, values per group; the bitmap has one bit per value and a group never
        spans two rows (the tensor's last dimension must be a multiple of G).
        Power of two, 8..4096. Default 64 (one KV head vector of SmolLM2).
    mantissa_bits : int
        m, mantissa bits kept in the speculation data (0..7); ``7 - m`` bits are
        truncated into the verification data. Default 3 (4 bits truncated).
    exponent_coding : str
        ``"raw"``, ``"unary"`` or ``"mx"``. Default ``"unary"``.
    mx_block_size : int
        B, kept values sharing one exponent in ``mx`` coding (power of two, 2..256).
        Ignored by the other codings but always stored.
    unary_max_code_length : int
        L_max: the unary codebook has L_max entries, the longest code is L_max
        bits, and the escape is L_max zeros followed by the raw 8-bit exponent
        (L_max + 8 bits). 1..16, default 8.
    superblock_groups : int
        Groups per superblock, the unit of random access: every stream's part of
        a superblock starts on a 64-bit boundary whose offset the container
        records. 1..4096, default 64 (4096 values).
    """

    group_size: int = 64
    mantissa_bits: int = 3
    exponent_coding: str = "unary"
    mx_block_size: int = 16
    unary_max_code_length: int = 8
    superblock_groups: int = 64

    def __post_init__(self) -> None:
        _check_int("group_size", self.group_size, 8, 4096, power_of_two=True)
        _check_int("mantissa_bits", self.mantissa_bits, 0, BF16_MANTISSA_BITS)
        if self.exponent_coding not in EXPONENT_CODINGS:
            raise ValueError(
                f"exponent_coding={self.exponent_coding!r} is not one of {EXPONENT_CODINGS}"
            )
        _check_int("mx_block_size", self.mx_block_size, 2, 256, power_of_two=True)
        _check_int("unary_max_code_length", self.unary_max_code_length, 1, 16)
        _check_int("superblock_groups", self.superblock_groups, 1, 4096)

    # -- derived field widths (the one place they are defined) ---------------
    @property
    def truncated_bits(self) -> int:
        """Mantissa bits moved to the verification data (``7 - m``)."""
        return BF16_MANTISSA_BITS - self.mantissa_bits

    @property
    def sign_mantissa_bits(self) -> int:
        """Width of one kept value's field in the ``sign_mantissa`` stream.

        ``1 + m`` for raw and unary (sign, high mantissa bits); ``2 + m`` for mx
        (sign, aligned significand of ``m + 1`` bits including the hidden bit).
        """
        extra = 1 if self.exponent_coding == "mx" else 0
        return 1 + self.mantissa_bits + extra

    @property
    def mx_significand_bits(self) -> int:
        """Width of the aligned significand an mx draft value carries (``m + 1``)."""
        return self.mantissa_bits + 1

    @property
    def unary_escape_bits(self) -> int:
        """Length of an escaped unary exponent: L_max zeros and 8 raw bits."""
        return self.unary_max_code_length + BF16_EXPONENT_BITS

    @property
    def superblock_values(self) -> int:
        """Values per (full) superblock."""
        return self.group_size * self.superblock_groups

    def as_dict(self) -> dict:
        return asdict(self)


def mantissa_bits_kept(truncated_bits: int, *, label: str | None = None) -> int:
    """``m = 7 - truncated_bits``, for interfaces that speak of bits truncated.

    ``label`` names the value in the error (default ``truncated_bits=N``).
    """
    if isinstance(truncated_bits, bool) or not isinstance(truncated_bits, int) or not 0 <= truncated_bits <= 7:
        label = label or f"truncated_bits={truncated_bits!r}"
        raise ValueError(f"{label} is out of range: BF16 has {BF16_MANTISSA_BITS} mantissa bits (0..7)")
    return BF16_MANTISSA_BITS - truncated_bits


def keep_count(group_size: int, prune_ratio: float) -> int:
    """Values kept per group of ``group_size`` for a pruning ratio.

    ``pruned = floor(prune_ratio * group_size + 0.5)`` (round half up), and
    ``kept = group_size - pruned``. 40% of 64 prunes 26 and keeps 38.
    """
    _check_int("group_size", group_size, 1, 1 << 20)
    if isinstance(prune_ratio, bool) or not isinstance(prune_ratio, (int, float)):
        raise TypeError(f"prune_ratio must be a number, got {prune_ratio!r}")
    if not 0.0 <= prune_ratio <= 1.0:
        raise ValueError(f"prune_ratio={prune_ratio} is out of range: it must be in [0, 1]")
    pruned = int(prune_ratio * group_size + 0.5)
    return group_size - pruned


# ---------------------------------------------------------------------------
# Command-line options: ``cassandra-sd``, ``python -m hw.verilog`` (``make verilog``),
# ``python -m fpga.area``, ``python -m fpga.build`` all spell the format this way.
# ---------------------------------------------------------------------------
#: FormatParams field -> (option, help). ``mantissa_bits`` is given as bits truncated.
FORMAT_OPTIONS: dict[str, tuple[str, str]] = {
    "mantissa_bits": ("--truncate", "mantissa bits truncated into the verification data, 0..7"),
    "exponent_coding": ("--exponent", "exponent coding"),
    "group_size": ("--group-size", "values per group, a power of two in 8..4096"),
    "mx_block_size": ("--mx-block", "kept values per shared exponent in mx coding"),
    "unary_max_code_length": ("--unary-max", "L_max: unary codebook entries, the longest code"),
    "superblock_groups": ("--superblock-groups", "groups per superblock"),
}
assert set(FORMAT_OPTIONS) == {f.name for f in fields(FormatParams)}


def _dest(option: str) -> str:
    return option.removeprefix("--").replace("-", "_")


def add_format_arguments(parser, names=None, *, exponent_codings=EXPONENT_CODINGS, defaults: bool = True,
                         help_prefix: str = "") -> None:
    """Add the options of :data:`FORMAT_OPTIONS` (all, or the fields in ``names``) to
    an ``argparse`` parser, with :class:`FormatParams`' defaults (``defaults=False``:
    no default, the option is ``None`` unless given). ``help_prefix`` starts each help
    text (e.g. ``"weights: "``)."""
    default = FormatParams()
    for name in FORMAT_OPTIONS if names is None else names:
        option, text = FORMAT_OPTIONS[name]
        value = default.truncated_bits if name == "mantissa_bits" else getattr(default, name)
        kwargs = {"choices": exponent_codings} if name == "exponent_coding" else {"type": int}
        parser.add_argument(option, dest=_dest(option), default=value if defaults else None,
                            help=f"{help_prefix}{text} (default {value})" if defaults else f"{help_prefix}{text}",
                            **kwargs)


def format_params_from_arguments(args, **defaults) -> FormatParams:
    """The :class:`FormatParams` of parsed :func:`add_format_arguments` options.

    Every option given (not ``None``) sets its field; ``defaults`` (field names) set
    the fields whose option is not given, in place of :class:`FormatParams`' own
    defaults. A bad value raises ``ValueError`` naming the option."""
    values = dict(defaults)
    for name, (option, _) in FORMAT_OPTIONS.items():
        value = getattr(args, _dest(option), None)
        if value is None:
            continue
        if name == "mantissa_bits":
            value = mantissa_bits_kept(value, label=f"{option} {value}")
        values[name] = value
    return FormatParams(**values)
