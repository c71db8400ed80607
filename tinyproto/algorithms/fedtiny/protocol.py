"""FedTiny's typed protocol: who is at which step, what each message is, and the rules between.

    Stage     what a client holds (new, candidates, bn, model)
    Phase     what the server waits for (bn, select, train)
    Upload    what a client sends (join, bn, loss, train)
    Download  what the server sends (candidates, bn, choice, model, model+masks)
    Field     the families of field names (a model tensor, bn<c>/, cand<c>/, mask/, grad/ ...)

``classify`` names a message's kind from its fields, explicitly: the families of its field
names must be exactly those of one kind (required ones present, nothing else), else a one-line
MessageError (an unknown or mixed message). The rules of the exchange are here too: which
upload a stage sends (``upload_for``), which uploads a phase accepts (``SERVER_ACCEPTS``),
which download answers an upload (``reply_to``), and at which stages a client takes each
download (``client_accepts``) and where it gets it (``STAGE_AFTER``).

Stages and phases are stored in checkpoints as their value strings (``EnumValues``), so a
checkpoint holds plain strings and loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import fields

from tinyproto.comm import Message, MessageError, show

VAL_KEY = "num_val"  # a client's validation-sample count (ABNS, selection): int metadata
VERSION_KEY = "mask_version"  # which mask a model's values follow: int metadata, both ways
LOSS_KEY = "loss"  # C summed validation losses, one per candidate
CHOICE_KEY = "choice"  # the chosen candidate's index


class Stage(enum.Enum):
    """What a client holds: nothing yet, the candidate pool, plus the aggregated BN statistics
    per candidate (ABNS), or the sparse model at a mask version."""

    NEW = "new"
    CANDIDATES = "candidates"
    BN = "bn"
    MODEL = "model"


class Phase(enum.Enum):
    """What the server waits for: ABNS statistics, candidate losses, or trained models."""

    BN = "bn"
    SELECT = "select"
    TRAIN = "train"


class Upload(enum.Enum):
    """A client's upload: empty (it holds nothing yet), ABNS statistics per candidate, summed
    validation losses per candidate, or a trained model (+ gradients in adjustment rounds)."""

    JOIN = "join"
    BN = "bn"
    LOSS = "loss"
    TRAIN = "train"


class Download(enum.Enum):
    """A server's download: the candidate pool, the aggregated ABNS statistics, the chosen
    candidate, the global model's values, or the model with its masks (a new mask version)."""

    CANDIDATES = "candidates"
    BN = "bn"
    CHOICE = "choice"
    MODEL = "model"
    MODEL_MASKS = "model+masks"


class Field(enum.Enum):
    """The families of field names; a field's family follows from its name alone."""

    MODEL = "model tensor"  # a model tensor by its name: kept values of a masked weight, or dense
    BN = "BN statistic"  # bn<c>/<statistic>: candidate c's BN running mean or variance
    CAND = "candidate bitmap"  # cand<c>/<weight>: candidate c's mask as a bitmap
    MASK = "mask bitmap"  # mask/<weight>: the global mask as a bitmap
    GRAD = "gradient"  # grad/<weight> (float32) and gidx/<weight> (int32 index)
    LOSS = "loss"
    CHOICE = "choice"


def bn_key(c: int, stat: str) -> str:
    return f"bn{c}/{stat}"


def cand_key(c: int, name: str) -> str:
    return f"cand{c}/{name}"


def mask_key(name: str) -> str:
    return f"mask/{name}"


def grad_key(name: str) -> str:
    return f"grad/{name}"


def gidx_key(name: str) -> str:
    return f"gidx/{name}"


_PATTERNS = (
    (re.compile(r"bn\d+/."), Field.BN),
    (re.compile(r"cand\d+/."), Field.CAND),
    (re.compile(r"mask/."), Field.MASK),
    (re.compile(r"(grad|gidx)/."), Field.GRAD),
)


def field_of(key: str) -> Field:
    """The family of field ``key`` (a name no other family claims is a model tensor's)."""
    if key == LOSS_KEY:
        return Field.LOSS
    if key == CHOICE_KEY:
        return Field.CHOICE
    for pattern, family in _PATTERNS:
        if pattern.match(key):
            return family
    return Field.MODEL


# the field families of each kind: (required, optional)
UPLOAD_FIELDS: dict[Upload, tuple[frozenset[Field], frozenset[Field]]] = {
    Upload.JOIN: (frozenset(), frozenset()),
    Upload.BN: (frozenset({Field.BN}), frozenset()),
    Upload.LOSS: (frozenset({Field.LOSS}), frozenset()),
    Upload.TRAIN: (frozenset({Field.MODEL}), frozenset({Field.GRAD})),
}
DOWNLOAD_FIELDS: dict[Download, tuple[frozenset[Field], frozenset[Field]]] = {
    Download.CANDIDATES: (frozenset({Field.CAND, Field.MODEL}), frozenset()),
    Download.BN: (frozenset({Field.BN}), frozenset()),
    Download.CHOICE: (frozenset({Field.CHOICE}), frozenset()),
    Download.MODEL: (frozenset({Field.MODEL}), frozenset()),
    Download.MODEL_MASKS: (frozenset({Field.MODEL, Field.MASK}), frozenset()),
}


def classify(msg: Message, sender: str, kinds: dict):
    """The kind (a key of ``kinds``: UPLOAD_FIELDS or DOWNLOAD_FIELDS) whose field families are
    exactly those of ``msg``: its required ones all present, no other. MessageError (one line,
    naming the sender and the fields) for a message that is no kind or mixes kinds. Field
    names must be strings (``comm.check_message``, which runs first)."""
    first: dict[Field, str] = {}
    for key in msg.arrays:
        first.setdefault(field_of(key), key)
    present = set(first)
    for kind, (required, optional) in kinds.items():
        if required <= present <= required | optional:
            return kind
    direction = "upload" if kinds is UPLOAD_FIELDS else "download"
    shown = " and ".join(f"{show(key)} ({family.value})" for family, key in first.items())
    what = {0: "an empty message fits", 1: f"field {shown} fits"}.get(
        len(first), f"fields {shown} fit together"
    )
    raise MessageError(
        f"message from {sender}: {what} no kind of FedTiny {direction} "
        f"(kinds: {', '.join(k.value for k in kinds)})"
    )


def upload_kind(msg: Message, sender: str) -> Upload:
    return classify(msg, sender, UPLOAD_FIELDS)


def download_kind(msg: Message, sender: str) -> Download:
    return classify(msg, sender, DOWNLOAD_FIELDS)


# -- the rules of the exchange ----------------------------------------------------------------


def upload_for(stage: Stage, abns: bool) -> Upload:
    """What a client at ``stage`` sends (``abns``: the run exchanges BN statistics)."""
    if stage is Stage.NEW:
        return Upload.JOIN
    if stage is Stage.CANDIDATES and abns:
        return Upload.BN
    if stage in (Stage.CANDIDATES, Stage.BN):
        return Upload.LOSS
    return Upload.TRAIN


# before the mask is chosen the server takes only setup uploads; once training, any upload (a
# client that missed a setup exchange under partial participation catches up by its reply)
SERVER_ACCEPTS: dict[Phase, frozenset[Upload]] = {
    Phase.BN: frozenset({Upload.JOIN, Upload.BN}),
    Phase.SELECT: frozenset({Upload.JOIN, Upload.BN, Upload.LOSS}),
    Phase.TRAIN: frozenset(Upload),
}


def reply_to(upload: Upload, phase: Phase, chosen_now: bool, stale: bool) -> Download:
    """The server's answer to ``upload`` in ``phase`` (after its step): during setup the pool to
    a joining client, else the aggregated BN statistics; once training the choice to a loss
    upload of the round that chose, else the model, with its masks to a client that lacks
    them (``stale``: its last download followed another mask version)."""
    if phase in (Phase.BN, Phase.SELECT):
        return Download.CANDIDATES if upload is Upload.JOIN else Download.BN
    if upload is Upload.LOSS and chosen_now:
        return Download.CHOICE
    return Download.MODEL_MASKS if stale else Download.MODEL


def client_accepts(download: Download, abns: bool) -> tuple[Stage, ...]:
    """The stages at which a client takes ``download``."""
    return {
        Download.CANDIDATES: (Stage.NEW,),
        Download.BN: (Stage.CANDIDATES,) if abns else (),
        Download.CHOICE: (Stage.BN,) if abns else (Stage.CANDIDATES,),
        Download.MODEL: (Stage.MODEL,),
        Download.MODEL_MASKS: tuple(Stage),
    }[download]


STAGE_AFTER: dict[Download, Stage] = {
    Download.CANDIDATES: Stage.CANDIDATES,
    Download.BN: Stage.BN,
    Download.CHOICE: Stage.MODEL,
    Download.MODEL: Stage.MODEL,
    Download.MODEL_MASKS: Stage.MODEL,
}


# -- stored states ------------------------------------------------------------------------------


class EnumValues:
    """For a StateDict dataclass whose enum fields default to a member: ``state_dict`` stores
    each as its value string, ``load_state_dict`` turns the string back into the member."""

    def state_dict(self) -> dict:
        sd = super().state_dict()
        return {k: v.value if isinstance(v, enum.Enum) else v for k, v in sd.items()}

    def load_state_dict(self, sd: dict) -> None:
        super().load_state_dict(sd)
        for f in fields(self):
            if isinstance(f.default, enum.Enum):
                setattr(self, f.name, type(f.default)(getattr(self, f.name)))
