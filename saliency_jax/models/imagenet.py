"""The 1000 ImageNet (ILSVRC-2012) classes, read from TensorFlow Datasets' own files.

TFDS maintains the class index (WordNet ids in ``imagenet2012/labels.txt``) and a
list of the human-readable names in the same order. They are read as data, without
importing TFDS (which is slow to import), and cached.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import os


def _tfds_root() -> str:
    spec = importlib.util.find_spec("tensorflow_datasets")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("tensorflow-datasets is required for the ImageNet class names")
    return list(spec.submodule_search_locations)[0]


@functools.cache
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 class names, index = class id (e.g. 285 -> ``"Egyptian cat"``)."""
    path = os.path.join(_tfds_root(), "datasets", "siscore", "labels.py")
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "IMAGENET_LABELS_LIST" for t in node.targets
        ):
            names = tuple(ast.literal_eval(node.value))
            if len(names) != 1000:
                raise RuntimeError(f"expected 1000 ImageNet class names in {path}, found {len(names)}")
            return names
    raise RuntimeError(f"no IMAGENET_LABELS_LIST in {path}")


@functools.cache
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 WordNet ids in class-id order (e.g. 285 -> ``"n02124075"``)."""
    path = os.path.join(_tfds_root(), "datasets", "imagenet2012", "labels.txt")
    with open(path, encoding="utf-8") as f:
        wnids = tuple(line.strip() for line in f if line.strip())
    if len(wnids) != 1000:
        raise RuntimeError(f"expected 1000 WordNet ids in {path}, found {len(wnids)}")
    return wnids


def short_name(class_id: int) -> str:
    """The first synonym of a class name, e.g. ``"kit fox"`` for 278 (an id in ``[0, 1000)``)."""
    from saliency_jax._checks import check_int

    names = imagenet_class_names()
    # Checked: a negative id would index from the end ("toilet tissue" for -1), True would be 1.
    return names[check_int(class_id, "class_id", 0, len(names) - 1)].split(",")[0].strip()


def class_id(name_or_id: str | int, class_names: tuple[str, ...] | None = None) -> int:
    """Resolves a class given as an id, a digit string, a WordNet id or any synonym.

    Args:
      name_or_id: e.g. ``285``, ``"285"``, ``"n02124075"``, ``"Egyptian cat"`` or
        ``"husky"`` (matched case-insensitively against each comma-separated synonym).
      class_names: the names to search; ImageNet's by default.

    Returns:
      The class id.

    Raises:
      ValueError: unknown or ambiguous name, or an id out of range.
    """
    names = class_names if class_names is not None else imagenet_class_names()
    if isinstance(names, (str, bytes)) or not all(isinstance(n, str) for n in names):
        raise ValueError("class_names must be a sequence of strings, one per class")
    text = str(name_or_id).strip()
    digits = text[1:] if text[:1] in "+-" else text
    if digits.isascii() and digits.isdigit():
        if len(digits.lstrip("0")) > 12:  # int() refuses thousands of digits; no class id is this long
            shown = text if len(text) <= 40 else f"{text[:40]}... ({len(text):,} digits)"
            raise ValueError(f"class id must be in [0, {len(names)}), got {shown}")
        cid = int(text)
        if not 0 <= cid < len(names):
            raise ValueError(f"class id must be in [0, {len(names)}), got {cid}")
        return cid
    if len(names) == 1000 and text.startswith("n") and text[1:].isascii() and text[1:].isdigit():
        try:
            return imagenet_wnids().index(text)
        except ValueError:
            raise ValueError(f"class: unknown WordNet id {text!r}") from None
    wanted = text.lower()
    exact = [i for i, n in enumerate(names) if n.lower() == wanted]
    if exact:
        return exact[0]
    matches = [i for i, n in enumerate(names) if wanted in (s.strip().lower() for s in n.split(","))]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        partial = [i for i, n in enumerate(names) if any(s.strip().lower().startswith(wanted) for s in n.split(","))]
        if len(partial) == 1:
            return partial[0]
        hint = f"; candidates: {[names[i] for i in partial[:5]]}" if partial else ""
        raise ValueError(f"class: no class named {text!r}{hint}")
    raise ValueError(f"class: {text!r} is ambiguous: {[names[i] for i in matches]}")
