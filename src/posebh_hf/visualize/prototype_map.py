"""Prototype maps (paper Fig. 11): where each skeleton's keypoint prototypes lie relative to the others.

Symbols: N keypoints over the chosen skeletons, M prototypes per keypoint, D embedding dim.

Keypoint-to-keypoint similarity is what the prototype heatmap uses: the best similarity over the M x M prototype
pairs, with the model's similarity mode (|cos| for "abs_cosine", so p and -p are the same direction). The 2D map is
scikit-learn's t-SNE (exact, precomputed chord distances sqrt(2 - 2 s), initialised from classical MDS with a fixed
random_state, so it is deterministic; `pip install 'posebh-hf[viz]'`) or the MDS itself (numpy only). Points are coloured by skeleton and labelled by keypoint name; thin grey lines join mutual nearest
keypoints of different skeletons that are at least 0.75 similar: the keypoints the model aligned.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic_files import write_atomically
from ..modeling import PoseBHForPoseEstimation

__all__ = [
    "PrototypeSet",
    "collect_prototypes",
    "embed_2d",
    "keypoint_similarity",
    "nearest_keypoints",
    "nearest_table_json",
    "nearest_table_markdown",
    "render_prototype_map",
]

# Links below this similarity would join unrelated keypoints: random 64-d directions already reach ~0.5 under |cos|
# when the best of M x M = 9 prototype pairs is taken.
DEFAULT_LINK_THRESHOLD = 0.75
# tab10, readable on white
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


@dataclass(frozen=True)
class PrototypeSet:
    """Keypoint prototypes of several skeletons, flattened in skeleton order.

    prototypes: [N, M, D] float64, unit rows; skeleton_of: [N] skeleton name per keypoint; names: [N] keypoint names.
    """

    prototypes: np.ndarray
    skeleton_of: tuple[str, ...]
    names: tuple[str, ...]
    skeletons: tuple[str, ...]
    similarity: str


def collect_prototypes(model: PoseBHForPoseEstimation, skeletons: Sequence[str] | None = None) -> PrototypeSet:
    """The prototypes of `skeletons` (default: every skeleton with prototypes, datasets then attached ones)."""
    known = list(model.config.prototype_skeleton_names)
    chosen = list(skeletons) if skeletons else known
    unknown = [s for s in chosen if s not in known]
    if unknown:
        raise ValueError(f"no prototypes for {unknown}; this model has prototypes for {known}")
    bank = model.keypoint_prototypes.prototypes.detach().to("cpu", dtype=model.keypoint_prototypes.prototypes.dtype)
    blocks, owners, names = [], [], []
    for name in chosen:
        block = bank[model.prototype_rows(name)].double().numpy()  # [K_s, M, D]
        blocks.append(block / np.maximum(np.linalg.norm(block, axis=-1, keepdims=True), 1e-12))
        owners += [name] * block.shape[0]
        names += list(model.skeleton(name).keypoint_names)
    return PrototypeSet(np.concatenate(blocks), tuple(owners), tuple(names), tuple(chosen),
                        model.config.similarity)


def keypoint_similarity(a: np.ndarray, b: np.ndarray, similarity: str = "abs_cosine") -> np.ndarray:
    """[Na, M, D] x [Nb, M, D] unit prototypes -> [Na, Nb]: the best similarity over all prototype pairs."""
    sims = np.einsum("imd,jnd->ijmn", a, b)
    if similarity == "abs_cosine":
        sims = np.abs(sims)
    elif similarity != "cosine":
        raise ValueError(f"unknown similarity {similarity!r}; expected 'abs_cosine' or 'cosine'")
    return sims.max(axis=(2, 3))


def nearest_keypoints(protos: PrototypeSet, top_k: int = 1) -> dict[str, dict[str, dict[str, list[dict]]]]:
    """{skeleton: {keypoint: {other skeleton: [{"keypoint", "similarity"}, ... top_k]}}}, best first."""
    sim = keypoint_similarity(protos.prototypes, protos.prototypes, protos.similarity)
    owners = np.asarray(protos.skeleton_of)
    table: dict[str, dict[str, dict[str, list[dict]]]] = {s: {} for s in protos.skeletons}
    for i, (skeleton, name) in enumerate(zip(protos.skeleton_of, protos.names, strict=True)):
        row: dict[str, list[dict]] = {}
        for other in protos.skeletons:
            if other == skeleton:
                continue
            idx = np.flatnonzero(owners == other)
            best = idx[np.argsort(-sim[i, idx], kind="stable")[:top_k]]
            row[other] = [{"keypoint": protos.names[j], "similarity": round(float(sim[i, j]), 4)} for j in best]
        table[skeleton][name] = row
    return table


def nearest_table_markdown(table: dict[str, dict[str, dict[str, list[dict]]]]) -> str:
    """One Markdown table per skeleton: each keypoint's nearest keypoints in every other skeleton."""
    out = []
    for skeleton, rows in table.items():
        others = list(next(iter(rows.values())).keys()) if rows else []
        out.append(f"### {skeleton}\n")
        out.append("| keypoint | " + " | ".join(others) + " |")
        out.append("|---|" + "---|" * len(others))
        for name, row in rows.items():
            cells = ["; ".join(f"{m['keypoint']} ({m['similarity']:.2f})" for m in row[o]) for o in others]
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def nearest_table_json(table: dict[str, dict[str, dict[str, list[dict]]]]) -> str:
    return json.dumps(table, indent=2)


# ---------------------------------------------------------------------------------------------- 2D embedding
def _classical_mds(dist: np.ndarray) -> np.ndarray:
    """[N, N] distances -> [N, 2] (top-2 eigenvectors of the double-centred squared distances)."""
    n = dist.shape[0]
    centre = np.eye(n) - 1.0 / n
    gram = -0.5 * centre @ (dist**2) @ centre
    values, vectors = np.linalg.eigh(gram)
    order = np.argsort(values)[::-1][:2]
    coords = vectors[:, order] * np.sqrt(np.maximum(values[order], 0.0))
    # eigenvector signs are arbitrary: fix them so the picture is reproducible
    signs = np.sign(coords[np.argmax(np.abs(coords), axis=0), np.arange(coords.shape[1])])
    return coords * np.where(signs == 0, 1.0, signs)


VIZ_INSTALL_HINT = "the t-SNE prototype map needs scikit-learn: pip install 'posebh-hf[viz]' (or use --method mds)"


def tsne_available() -> bool:
    """Whether scikit-learn (the `viz` extra) can be imported, so `method="tsne"` works."""
    import importlib.util

    try:
        return importlib.util.find_spec("sklearn") is not None and importlib.util.find_spec("sklearn.manifold") \
            is not None
    except (ImportError, ValueError):  # a broken or stubbed-out sklearn
        return False


def _tsne(dist: np.ndarray, init: np.ndarray, perplexity: float = 15.0, seed: int = 0) -> np.ndarray:
    """scikit-learn's exact t-SNE of precomputed distances, started from `init` (the MDS map): deterministic."""
    try:
        from sklearn.manifold import TSNE
    except ImportError as err:
        raise ImportError(VIZ_INSTALL_HINT) from err
    n = dist.shape[0]
    # sklearn requires perplexity < n; (n - 1) / 3 keeps ~3 perplexities of neighbours available per point
    perplexity = max(2.0, min(perplexity, (n - 1) / 3.0))
    start = init / max(float(np.std(init[:, 0])), 1e-12) * 1e-4  # the scale sklearn's own "pca" init uses
    tsne = TSNE(n_components=2, perplexity=perplexity, metric="precomputed", init=start, method="exact",
                learning_rate="auto", random_state=seed)
    coords = tsne.fit_transform(dist)
    return coords - coords.mean(axis=0)


def embed_2d(protos: PrototypeSet, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """[N, 2] map coordinates of the keypoints ("tsne", needs scikit-learn, or "mds"); deterministic for a seed."""
    sim = keypoint_similarity(protos.prototypes, protos.prototypes, protos.similarity)
    dist = np.sqrt(np.maximum(2.0 - 2.0 * np.clip(sim, -1.0, 1.0), 0.0))
    np.fill_diagonal(dist, 0.0)
    mds = _classical_mds(dist)
    if method == "mds" or len(dist) < 4:
        return mds
    if method != "tsne":
        raise ValueError(f"unknown projection {method!r}; expected 'tsne' or 'mds'")
    return _tsne(dist, mds, seed=seed)


def _mutual_nearest(protos: PrototypeSet, threshold: float = 0.0) -> list[tuple[int, int]]:
    """Pairs (i, j) of keypoints of different skeletons that are each other's nearest in the other's skeleton and
    at least `threshold` similar."""
    sim = keypoint_similarity(protos.prototypes, protos.prototypes, protos.similarity)
    owners = np.asarray(protos.skeleton_of)
    best: dict[tuple[int, str], int] = {}
    for i in range(len(owners)):
        for other in protos.skeletons:
            if other != owners[i]:
                idx = np.flatnonzero(owners == other)
                best[(i, other)] = int(idx[np.argmax(sim[i, idx])])
    return sorted({(min(i, j), max(i, j)) for (i, other), j in best.items()
                   if best[(j, owners[i])] == i and sim[i, j] >= threshold})


# ---------------------------------------------------------------------------------------------- drawing
def render_prototype_map(protos: PrototypeSet, coords: np.ndarray, *, title: str = "", size: int = 1400,
                         links: bool = True, link_threshold: float = DEFAULT_LINK_THRESHOLD) -> np.ndarray:
    """Draw the map: RGB uint8 [H, W, 3]. Labels that would overlap an earlier label are left out. Grey lines join
    mutual nearest keypoints of different skeletons whose similarity is at least `link_threshold`."""
    from PIL import Image, ImageDraw, ImageFont

    legend_w, margin, top = 260, 40, 60
    width, height = size + legend_w, int(size * 0.75) + top
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font, title_font = ImageFont.load_default(size=13), ImageFont.load_default(size=20)
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    span = np.maximum(hi - lo, 1e-9)
    box_w, box_h = size - 2 * margin, height - top - 2 * margin
    scale = min(box_w / span[0], box_h / span[1])
    offset = np.array([margin + (box_w - span[0] * scale) / 2, top + margin + (box_h - span[1] * scale) / 2])
    xy = (coords - lo) * scale + offset
    xy[:, 1] = 2 * offset[1] + span[1] * scale - xy[:, 1]  # y up
    colour = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(protos.skeletons)}
    if links:
        for i, j in _mutual_nearest(protos, link_threshold):
            draw.line([tuple(xy[i]), tuple(xy[j])], fill=(200, 200, 200), width=1)
    for (x, y), owner in zip(xy, protos.skeleton_of, strict=True):
        draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=colour[owner], outline=(40, 40, 40))
    placed: list[tuple[float, float, float, float]] = []
    for (x, y), owner, name in zip(xy, protos.skeleton_of, protos.names, strict=True):
        left, upper, right, lower = draw.textbbox((0, 0), name, font=font)
        w, h = right - left, lower - upper
        for dx, dy in ((6, -h / 2), (-6 - w, -h / 2), (-w / 2, -h - 6), (-w / 2, 6)):
            box = (x + dx - 1, y + dy - 1, x + dx + w + 1, y + dy + h + 1)
            if box[0] >= 0 and box[2] <= size and box[1] >= top and box[3] <= height and not any(
                    box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                placed.append(box)
                draw.text((x + dx, y + dy - upper), name, fill=tuple(int(c * 0.7) for c in colour[owner]), font=font)
                break
    draw.text((margin, 15), title, fill=(0, 0, 0), font=title_font)
    for i, skeleton in enumerate(protos.skeletons):
        y = top + margin + 28 * i
        count = protos.skeleton_of.count(skeleton)
        draw.rectangle([size + 10, y, size + 28, y + 18], fill=colour[skeleton], outline=(40, 40, 40))
        draw.text((size + 36, y + 1), f"{skeleton} ({count})", fill=(0, 0, 0), font=font)
    if links:
        y = top + margin + 28 * len(protos.skeletons) + 10
        draw.line([size + 10, y + 9, size + 28, y + 9], fill=(200, 200, 200), width=2)
        draw.text((size + 36, y + 1), f"mutual nearest, sim >= {link_threshold:.2f}", fill=(80, 80, 80), font=font)
    return np.asarray(image)


def prototype_map(model: PoseBHForPoseEstimation, out: str | Path, *, skeletons: Sequence[str] | None = None,
                  method: str = "tsne", links: bool = True, link_threshold: float = DEFAULT_LINK_THRESHOLD
                  ) -> PrototypeSet:
    """Compute and write the map PNG to `out` (atomically). Returns the prototypes used."""

    from PIL import Image

    protos = collect_prototypes(model, skeletons)
    coords = embed_2d(protos, method)
    title = (f"PoseBH keypoint prototypes ({method.upper()}, similarity {protos.similarity}, "
             f"M={protos.prototypes.shape[1]})")
    image = render_prototype_map(protos, coords, title=title, links=links, link_threshold=link_threshold)
    write_atomically(out, lambda tmp: Image.fromarray(image).save(tmp, format="PNG"))
    return protos
