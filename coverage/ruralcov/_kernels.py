"""numba kernels of the spatial engine (``join``) and the streaming statistics (``stream``).

Kept in one private module so that numba is imported only when a kernel is first needed, and
so that numba's on-disk cache (``cache=True``) serves every later process without compiling.
"""
# ruff: noqa: N803, N806
from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np


def import_numba():
    """numba, imported so that the ``coverage/`` source root cannot break it.

    numba imports ``coverage`` (coverage.py) when it is importable. Run from the repository root,
    ``coverage/`` (our source root, not a package) is found first as a namespace package without
    coverage.py's API, and numba's import fails; in that case numba is imported as if coverage.py
    were absent.

    Returns
    -------
    module
        The ``numba`` module.
    """
    if "numba" not in sys.modules:
        if "coverage" not in sys.modules:
            spec = importlib.util.find_spec("coverage")
            shadow = spec is not None and spec.origin in (None, "namespace")
        else:
            shadow = getattr(sys.modules["coverage"], "__file__", None) is None
        saved = sys.modules.get("coverage")
        if shadow:
            sys.modules["coverage"] = None  # type: ignore[assignment]  # `import coverage` fails
        try:
            import numba  # noqa: F401
        finally:
            if shadow and saved is None:
                del sys.modules["coverage"]
            elif shadow:
                sys.modules["coverage"] = saved
    _defer_blas_probe()
    return sys.modules["numba"]


def _defer_blas_probe() -> None:
    """Import numba's array functions without their BLAS probe, which imports scipy.linalg.

    The probe (``numba.np.arraymath._HAVE_BLAS``) runs when the first kernel is loaded and
    imports scipy.linalg, a slow import that none of our kernels needs. Its answer is
    set from whether scipy is installed (what the probe finds with scipy >= 0.16); numba still
    imports scipy.linalg itself when it compiles a function that calls BLAS.
    """
    if "numba.np.arraymath" in sys.modules or "scipy.linalg" in sys.modules:
        return  # probed already, or nothing to save
    try:
        import numba.np.linalg as linalg
    except ImportError:  # pragma: no cover - a numba that moved it: let it probe
        return
    probe = linalg.ensure_blas

    def deferred() -> None:
        raise ImportError("deferred")

    linalg.ensure_blas = deferred
    try:
        import numba.np.arraymath as arraymath
    finally:
        linalg.ensure_blas = probe
    arraymath.ensure_blas = probe
    arraymath._HAVE_BLAS = importlib.util.find_spec("scipy.linalg") is not None



# The OpenMP threads of numba's parallel kernels spin while they wait for work by default; with
# few cores they take the CPU from the threads that read and accumulate the tests. A setting of
# the user's wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
numba = import_numba()
njit, prange = numba.njit, numba.prange

_EPS = 2.0**-53
#: Shewchuk's bound for the first stage of orient2d: a computed determinant larger than this
#: times the sum of the magnitudes of its two products has the sign of the exact one.
CCW_ERRBOUND_A = (3.0 + 16.0 * _EPS) * _EPS


@njit(cache=True, nogil=True)
def orient(ax, ay, bx, by, px, py):  # pragma: no cover - compiled
    # Shewchuk's orient2d, first stage: the sign when provably right, else 0 (uncertain).
    detleft = (ax - px) * (by - py)
    detright = (ay - py) * (bx - px)
    det = detleft - detright
    bound = CCW_ERRBOUND_A * (abs(detleft) + abs(detright))
    if det > bound:
        return 1
    if -det > bound:
        return -1
    return 0

@njit(cache=True, nogil=True)
def ring_parity(xs, ys, s, e, px, py):  # pragma: no cover - compiled
    """Crossings of the ray to the right of p with ring [s, e): 0/1, or 2 if uncertain."""
    c = 0
    for i in range(s, e - 1):
        ax = xs[i]
        ay = ys[i]
        bx = xs[i + 1]
        by = ys[i + 1]
        if (ay > py) != (by > py):
            o = orient(ax, ay, bx, by, px, py)
            if o == 0:
                return 2
            if (o > 0) == (by > ay):
                c += 1
        elif ay == py or by == py:
            # The edge meets the line y = py only at an endpoint or along itself.
            if min(ax, bx) <= px <= max(ax, bx):
                return 2
    return c & 1

@njit(cache=True, nogil=True)
def covers(pid, px, py, xs, ys, ring_off, part_ring, poly_part):  # pragma: no cover
    """1: the polygon covers p for sure; 0: it does not; 2: uncertain (near its boundary)."""
    for part in range(poly_part[pid], poly_part[pid + 1]):
        r0 = part_ring[part]
        r1 = part_ring[part + 1]
        par = ring_parity(xs, ys, ring_off[r0], ring_off[r0 + 1], px, py)
        if par == 2:
            return 2
        if par == 0:
            continue
        inside = True
        for r in range(r0 + 1, r1):  # holes
            h = ring_parity(xs, ys, ring_off[r], ring_off[r + 1], px, py)
            if h == 2:
                return 2
            if h == 1:
                inside = False
                break
        if inside:
            return 1
    return 0

@njit(cache=True, nogil=True)
def _ring_cells(xs, ys, s, e, pid, gx0, gy0, cs, nx, ny, margin, out_cell, out_poly, out_edge,
                k, count_only):  # pragma: no cover - compiled
    """(cell, polygon, edge) for every cell an edge of ring [s, e) comes within ``margin`` of
    (the edge by the position of its first vertex), written from ``k`` on; returns the end."""
    inv = 1.0 / cs
    for i in range(s, e - 1):
        ax = xs[i]
        ay = ys[i]
        bx = xs[i + 1]
        by = ys[i + 1]
        xlo = min(ax, bx)
        xhi = max(ax, bx)
        ix0 = max(int(np.floor((xlo - margin - gx0) * inv)), 0)
        ix1 = min(int(np.floor((xhi + margin - gx0) * inv)), nx - 1)
        for ix in range(ix0, ix1 + 1):
            cx0 = max(gx0 + ix * cs - margin, xlo)
            cx1 = min(gx0 + (ix + 1) * cs + margin, xhi)
            if ax == bx:
                y0 = min(ay, by)
                y1 = max(ay, by)
            else:
                t0 = ay + (cx0 - ax) * (by - ay) / (bx - ax)
                t1 = ay + (cx1 - ax) * (by - ay) / (bx - ax)
                y0 = min(t0, t1)
                y1 = max(t0, t1)
            iy0 = max(int(np.floor((y0 - margin - gy0) * inv)), 0)
            iy1 = min(int(np.floor((y1 + margin - gy0) * inv)), ny - 1)
            for iy in range(iy0, iy1 + 1):
                if not count_only:
                    out_cell[k] = iy * nx + ix
                    out_poly[k] = pid
                    out_edge[k] = i
                k += 1
    return k


@njit(cache=True, nogil=True, parallel=True)
def rasterize(xs, ys, ring_off, ring_poly, gx0, gy0, cs, nx, ny, margin, start, out_cell,
              out_poly, out_edge, count_only):  # pragma: no cover - compiled
    """The :func:`_ring_cells` of every ring, rings in parallel. With ``count_only``, sets
    ``start[r + 1]`` to ring r's number of entries; otherwise writes ring r's entries from
    ``start[r]`` on (``start`` then holds the running sums: the order is the rings')."""
    for r in prange(len(ring_off) - 1):
        k = 0 if count_only else start[r]
        k = _ring_cells(xs, ys, ring_off[r], ring_off[r + 1], ring_poly[r], gx0, gy0, cs, nx,
                        ny, margin, out_cell, out_poly, out_edge, k, count_only)
        if count_only:
            start[r + 1] = k


@njit(cache=True, nogil=True)
def _crossings(xs, ys, s, e, yc, buf, k):  # pragma: no cover - compiled
    """Append to ``buf`` (from ``k``) the x of ring [s, e)'s crossings with y = yc; returns the
    end, and whether a vertex lies on that line (where crossings do not tell a point on the
    boundary)."""
    on_line = False
    for i in range(s, e - 1):
        ay = ys[i]
        by = ys[i + 1]
        if ay == yc:
            on_line = True
        if (ay > yc) != (by > yc):
            ax = xs[i]
            buf[k] = ax + (yc - ay) * (xs[i + 1] - ax) / (by - ay)
            k += 1
    return k, on_line


@njit(cache=True, nogil=True)
def _near(buf, n, j, xc, tol):  # pragma: no cover - compiled
    """Whether a crossing next to position ``j`` of the sorted ``buf[:n]`` is within ``tol``
    of ``xc``."""
    return (j > 0 and xc - buf[j - 1] <= tol) or (j < n and buf[j] - xc <= tol)


@njit(cache=True, nogil=True, parallel=True)
def fill(state, slot_start, slot_cand, slot_owner, ref, by_parity, rank, bbox, gx0, gy0, cs,
         nx, ny, xs, ys, ring_off, part_ring, poly_part):  # pragma: no cover - compiled
    """Give every cell that lies wholly inside a polygon its owner (the lowest rank), and every
    candidate of a boundary cell whose polygon is ``by_parity`` its answer at the cell's centre
    (``ref``: 1 covered, 0 not, -1 unsure; given 0 for by-parity candidates, -1 otherwise).

    Scanlines through the row centres decide, over each polygon's bounding box: a centre is
    inside when the crossings of the shell to its right are odd and of the holes even. A cell
    no edge of P comes near lies wholly inside P or outside; its centre is at least half a
    cell from every crossing, so rounding cannot change the answer. In a cell P's edges touch,
    the centre's answer is kept only when every crossing is farther from it than the rounding
    of the crossing's x can reach and no vertex lies on the scanline (otherwise the centre
    could be on the boundary); cells outside the box keep 0. Rows of cells are filled in
    parallel (a cell is written only by its own row, and the lowest rank wins in any order).
    """
    inv = 1.0 / cs
    n = len(rank)
    box = np.empty((n, 4), dtype=np.int64)  # ix0, ix1, iy0, iy1 of each polygon's cells
    tol = np.empty(n)  # bound on the error of a crossing's computed x
    per_row = np.zeros(ny + 1, dtype=np.int64)
    biggest = 1
    for pid in range(n):
        box[pid, 0] = max(int(np.floor((bbox[pid, 0] - gx0) * inv)), 0)
        box[pid, 1] = min(int(np.floor((bbox[pid, 2] - gx0) * inv)), nx - 1)
        box[pid, 2] = max(int(np.floor((bbox[pid, 1] - gy0) * inv)), 0)
        box[pid, 3] = min(int(np.floor((bbox[pid, 3] - gy0) * inv)), ny - 1)
        # ax + (yc - ay) * (bx - ax) / (by - ay): five roundings of terms below 3 max|x|.
        tol[pid] = 64.0 * _EPS * max(abs(bbox[pid, 0]), abs(bbox[pid, 2]))
        for iy in range(box[pid, 2], box[pid, 3] + 1):
            per_row[iy + 1] += 1
        p0 = poly_part[pid]
        p1 = poly_part[pid + 1]
        biggest = max(biggest, ring_off[part_ring[p1]] - ring_off[part_ring[p0]])
    for iy in range(ny):
        per_row[iy + 1] += per_row[iy]
    row_polys = np.empty(per_row[ny], dtype=np.int64)  # the polygons of each row, by position
    pos = per_row[:-1].copy()
    for pid in range(n):
        for iy in range(box[pid, 2], box[pid, 3] + 1):
            row_polys[pos[iy]] = pid
            pos[iy] += 1
    n_blocks = min(ny, 256)
    for blk in prange(n_blocks):
        shell = np.empty(biggest)
        holes = np.empty(biggest)
        for iy in range(blk * ny // n_blocks, (blk + 1) * ny // n_blocks):
            yc = gy0 + (iy + 0.5) * cs
            for j in range(per_row[iy], per_row[iy + 1]):
                pid = row_polys[j]
                for part in range(poly_part[pid], poly_part[pid + 1]):
                    r0 = part_ring[part]
                    r1 = part_ring[part + 1]
                    ns, on_line = _crossings(xs, ys, ring_off[r0], ring_off[r0 + 1], yc, shell,
                                             0)
                    nh = 0
                    for r in range(r0 + 1, r1):
                        nh, hole_on = _crossings(xs, ys, ring_off[r], ring_off[r + 1], yc, holes,
                                                 nh)
                        on_line |= hole_on
                    centres = by_parity[pid]  # one part: its answers at centres are wanted
                    if ns == 0 and not (centres and on_line):
                        continue  # the line misses the part: no cell of this row is inside
                    _insertion_sort(shell, ns)
                    _insertion_sort(holes, nh)
                    js = 0  # crossings left of the current centre
                    jh = 0
                    for ix in range(box[pid, 0], box[pid, 1] + 1):
                        xc = gx0 + (ix + 0.5) * cs
                        while js < ns and shell[js] < xc:
                            js += 1
                        while jh < nh and holes[jh] < xc:
                            jh += 1
                        inside = (ns - js) % 2 == 1 and (nh - jh) % 2 == 0
                        cell = iy * nx + ix
                        st = state[cell]
                        if st <= -2:
                            slot = -st - 2
                            touched = -1
                            for k in range(slot_start[slot], slot_start[slot + 1]):
                                if slot_cand[k] == pid:
                                    touched = k
                                    break
                            if touched >= 0:
                                if centres:
                                    unsure = (on_line or _near(shell, ns, js, xc, tol[pid])
                                              or _near(holes, nh, jh, xc, tol[pid]))
                                    ref[touched] = -1 if unsure else (1 if inside else 0)
                                continue
                            if not inside:
                                continue
                            own = slot_owner[slot]
                            if own < 0 or rank[pid] < rank[own]:
                                slot_owner[slot] = pid
                        elif inside and (st == -1 or rank[pid] < rank[st]):
                            state[cell] = pid
    return True


@njit(cache=True, nogil=True, parallel=True)
def assign(px, py, out, state, rec_start, rec, keep, gx0, gy0, cs, nx, ny, xs, ys, ring_off,
           part_ring, poly_part):  # pragma: no cover - compiled
    """The polygon covering each point (``out``), -1 outside all, -3 when near a boundary.

    A point in a cell no edge comes near takes the cell's owner. In a cell crossed by edges,
    the candidates of its record (:func:`pack_slots`) are tried by rank: a candidate whose
    answer at the cell's centre is known flips it for each of its edges in the cell that the
    short path from the centre to the point crosses (:func:`path_parity`: a few edges instead
    of the polygon's every ring); otherwise its rings are tested (:func:`covers`).
    """
    inv = 1.0 / cs
    gx1 = gx0 + nx * cs
    gy1 = gy0 + ny * cs
    coords = rec.view(np.float64)
    for i in prange(len(px)):
        x = px[i]
        y = py[i]
        res = -1
        if x >= gx0 and x < gx1 and y >= gy0 and y < gy1:
            ix = min(int((x - gx0) * inv), nx - 1)
            iy = min(int((y - gy0) * inv), ny - 1)
            cell = iy * nx + ix
            st = state[cell]
            if st >= 0:
                res = st
            elif st <= -2:
                p = rec_start[-st - 2]
                res = rec[p]  # the owner, unless a candidate that outranks it covers the point
                n = rec[p + 1]
                p += 2
                xc, yc = cell_centre(gx0, gy0, cs, nx, cell)
                for _ in range(n):
                    c = rec[p]
                    ref = rec[p + 1]
                    ne = rec[p + 2]
                    p += 3
                    if ref >= 0:
                        cov = path_parity(ref, coords, p, ne, x, y, xc, yc)
                    else:
                        cov = covers(c, x, y, xs, ys, ring_off, part_ring, poly_part)
                    p += 4 * ne
                    if cov == 1:
                        res = c
                        break
                    if cov == 2:
                        res = -3
                        break
        out[i] = keep[res] if res >= 0 else res


# --- streaming statistics ----------------------------------------------------------------


@njit(cache=True, nogil=True)
def _group_offsets(groups, n_groups):  # pragma: no cover - compiled
    """Where each group starts in ``groups`` sorted by group: ``n_groups + 1`` offsets, the
    counting part of the stable counting sorts below."""
    counts = np.zeros(n_groups + 1, dtype=np.int64)
    for g in groups:
        counts[g + 1] += 1
    for i in range(n_groups):
        counts[i + 1] += counts[i]
    return counts


@njit(cache=True, nogil=True)
def order_by_group(groups, n_groups):  # pragma: no cover - compiled
    """A stable counting sort: the permutation grouping ``groups`` and group offsets."""
    counts = _group_offsets(groups, n_groups)
    pos = counts[:-1].copy()
    perm = np.empty(len(groups), dtype=np.int64)
    for i in range(len(groups)):
        g = groups[i]
        perm[pos[g]] = i
        pos[g] += 1
    return perm, counts

@njit(cache=True, nogil=True)
def _select(a, lo, hi, k):  # pragma: no cover - compiled
    """Rearrange ``a[lo:hi]`` so that ``a[k]`` holds the value of rank ``k`` (Hoare quickselect,
    median-of-three pivot, insertion sort for short ranges); no NaN in ``a[lo:hi]``."""
    while hi - lo > 16:
        mid = (lo + hi - 1) // 2
        x, y, z = a[lo], a[mid], a[hi - 1]
        if x > y:
            x, y = y, x
        if y > z:
            y = z
            if x > y:
                y = x
        pivot = y
        i = lo
        j = hi - 1
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                t = a[i]
                a[i] = a[j]
                a[j] = t
                i += 1
                j -= 1
        if k <= j:
            hi = j + 1
        elif k >= i:
            lo = i
        else:
            return
    _insertion_sort(a[lo:hi], hi - lo)


@njit(cache=True, nogil=True)
def _rank_values(buf, n, ranks, vals):  # pragma: no cover - compiled
    """``vals[j]``: the value of 1-based rank ``ranks[j]`` in ``buf[:n]`` (ranks ascending;
    0: none, NaN). Each selection leaves the ranks below it to its left, so the next one
    only searches to the right."""
    lo = 0
    for j in range(len(ranks)):
        r = ranks[j]
        if r <= 0:
            vals[j] = np.nan
            continue
        k = r - 1
        if k >= lo:
            _select(buf, lo, n, k)
            lo = k + 1
        vals[j] = buf[k]


@njit(cache=True, nogil=True)
def _select_median(buf, n):  # pragma: no cover - compiled
    """Exact median of ``buf[:n]`` (mean of the two middle values), reordering ``buf``."""
    if n == 0:
        return np.nan
    lo = (n + 1) // 2
    _select(buf, 0, n, lo - 1)
    a = buf[lo - 1]
    if n % 2 == 1:
        return a
    b = buf[lo]  # rank lo + 1: the smallest value right of rank lo
    for i in range(lo + 1, n):
        if buf[i] < b:
            b = buf[i]
    return (a + b) / 2.0


@njit(cache=True, nogil=True)
def _nan_median(values, buf):  # pragma: no cover - compiled
    k = 0
    for val in values:
        if not np.isnan(val):
            buf[k] = val
            k += 1
    return _select_median(buf, k)


@njit(cache=True, nogil=True, parallel=True)
def village_stats(offsets, down, up, lat, dev, dev_ok, has_up, has_lat, has_dev, target,
                  ci_lo, ci_hi, out):  # pragma: no cover - compiled
    """Per group: tests, devices, median, CI low, CI high, upload, latency, share.

    Order statistics by selection rather than sorting (linear per village) and distinct
    devices by a small open-addressing set; values equal to sorting's.
    """
    for v in prange(len(offsets) - 1):
        s = offsets[v]
        e = offsets[v + 1]
        buf = np.empty(e - s)
        n = 0
        at = 0
        t = target[v]
        for i in range(s, e):
            x = down[i]
            if not np.isnan(x):
                buf[n] = x
                n += 1
                if x >= t:
                    at += 1
        out[v, 0] = n
        if n == 0:
            out[v, 1] = 0.0
            for j in range(2, 8):
                out[v, j] = np.nan
        else:
            lo = (n + 1) // 2
            hi = lo if n % 2 == 1 else n // 2 + 1
            ranks = np.array([ci_lo[v], lo, hi, ci_hi[v]], dtype=np.int64)
            order = np.argsort(ranks)  # ascending, for the successive selections
            picked = np.empty(4)
            _rank_values(buf, n, ranks[order], picked)
            vals = np.empty(4)
            for j in range(4):
                vals[order[j]] = picked[j]
            out[v, 2] = (vals[1] + vals[2]) / 2.0
            out[v, 3] = vals[0] if ci_lo[v] > 0 else np.nan
            out[v, 4] = vals[3] if ci_hi[v] > 0 else np.nan
            out[v, 7] = at / n
        out[v, 5] = _nan_median(up[s:e], buf) if has_up else np.nan
        out[v, 6] = _nan_median(lat[s:e], buf) if has_lat else np.nan
        if has_dev:
            m = 2
            while m < 2 * (e - s):
                m *= 2
            table = np.empty(m, dtype=np.uint64)
            used = np.zeros(m, dtype=np.bool_)
            mask = np.uint64(m - 1)
            distinct = 0
            for i in range(s, e):
                if dev_ok[i] and not np.isnan(down[i]):
                    key = dev[i]
                    slot = _mix(key) & mask
                    while used[slot] and table[slot] != key:
                        slot = (slot + np.uint64(1)) & mask
                    if not used[slot]:
                        used[slot] = True
                        table[slot] = key
                        distinct += 1
            out[v, 1] = distinct
        else:
            out[v, 1] = np.nan


@njit(cache=True, nogil=True)
def _insertion_sort(a, n):  # pragma: no cover - compiled
    for i in range(1, n):
        v = a[i]
        j = i - 1
        while j >= 0 and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v


@njit(cache=True, nogil=True, parallel=True)
def build_slots(cells, pids, edges, rank, n_cells):  # pragma: no cover - compiled
    """Group (cell, polygon, edge) triples by cell: the cells, their start offsets into the
    candidates, each cell's distinct polygons ordered by rank, and each candidate's edges in the
    cell (``cand_edges[cand_edge_start[k]:cand_edge_start[k + 1]]``). Cells are sorted and
    emitted in parallel, at offsets counted beforehand."""
    counts = np.zeros(n_cells + 1, dtype=np.int64)
    for c in cells:
        counts[c + 1] += 1
    for i in range(n_cells):
        counts[i + 1] += counts[i]
    pos = counts[:-1].copy()
    by_cell = np.empty(len(cells), dtype=np.int64)  # rank << 32 | edge: sorts by rank, then edge
    for i in range(len(cells)):
        c = cells[i]
        by_cell[pos[c]] = (rank[pids[i]] << 32) | edges[i]
        pos[c] += 1
    n_slots = 0
    for c in range(n_cells):
        if counts[c + 1] > counts[c]:
            n_slots += 1
    slot_cells = np.empty(n_slots, dtype=np.int64)
    s = 0
    for c in range(n_cells):
        if counts[c + 1] > counts[c]:
            slot_cells[s] = c
            s += 1
    slot_start = np.zeros(n_slots + 1, dtype=np.int64)  # first: each cell's distinct polygons
    for s in prange(n_slots):
        a = counts[slot_cells[s]]
        b = counts[slot_cells[s] + 1]
        grp = by_cell[a:b]
        if b - a > 32:
            grp.sort()
        else:
            _insertion_sort(grp, b - a)
        d = 1
        for i in range(1, b - a):
            if grp[i] >> 32 != grp[i - 1] >> 32:
                d += 1
        slot_start[s + 1] = d
    for s in range(n_slots):
        slot_start[s + 1] += slot_start[s]
    n_cand = slot_start[n_slots]
    cand_rank = np.empty(n_cand, dtype=np.int64)
    cand_edge_start = np.empty(n_cand + 1, dtype=np.int64)
    cand_edges = np.empty(len(cells), dtype=np.int64)
    low = np.int64((1 << 32) - 1)
    for s in prange(n_slots):
        a = counts[slot_cells[s]]
        b = counts[slot_cells[s] + 1]
        k = slot_start[s]
        for i in range(a, b):
            r = by_cell[i] >> 32
            if i == a or r != by_cell[i - 1] >> 32:
                cand_rank[k] = r
                cand_edge_start[k] = i
                k += 1
            cand_edges[i] = by_cell[i] & low
    cand_edge_start[n_cand] = len(cells)
    return slot_cells, slot_start, cand_rank, cand_edge_start, cand_edges


@njit(cache=True, nogil=True)
def cell_centre(gx0, gy0, cs, nx, cell):  # pragma: no cover - compiled
    """The centre of a grid cell, computed the same way wherever it is needed."""
    iy = cell // nx
    ix = cell - iy * nx
    return gx0 + (ix + 0.5) * cs, gy0 + (iy + 0.5) * cs


@njit(cache=True, nogil=True)
def _across(da, db, a, b, lo, hi):  # pragma: no cover - compiled
    """How an edge meets the line of a path leg: ``da``, ``db`` are its endpoints' offsets
    from that line, ``a``, ``b`` their coordinates along it, [lo, hi] the leg. 1: strictly
    across the line (the sides of the leg's ends then decide); 2: touching the line within
    the leg (uncertain); 0: neither."""
    if da == 0 or db == 0:
        if da == 0 and db == 0:  # along the line
            return 2 if max(min(a, b), lo) <= min(max(a, b), hi) else 0
        return 2 if lo <= (a if da == 0 else b) <= hi else 0
    return 1 if (da > 0) != (db > 0) else 0


@njit(cache=True, nogil=True)
def path_parity(ref, coords, p, ne, px, py, xc, yc):  # pragma: no cover - compiled
    """Whether a polygon covers p, from its known answer ``ref`` at the cell centre (xc, yc):
    flipped once for each of its ``ne`` edges in the cell (``coords[p:p + 4 * ne]``, each as
    ax, ay, bx, by) that the path p -> (xc, py) -> (xc, yc) crosses. 2 (uncertain) when an
    edge touches the path rather than crossing it, or a side cannot be told for sure."""
    par = ref
    xlo = min(px, xc)
    xhi = max(px, xc)
    ylo = min(py, yc)
    yhi = max(py, yc)
    for j in range(p, p + 4 * ne, 4):
        ax = coords[j]
        ay = coords[j + 1]
        bx = coords[j + 2]
        by = coords[j + 3]
        horizontal = _across(ay - py, by - py, ax, bx, xlo, xhi)
        vertical = _across(ax - xc, bx - xc, ay, by, ylo, yhi)
        if horizontal == 2 or vertical == 2:
            return 2
        if horizontal == 0 and vertical == 0:
            continue
        oq = orient(ax, ay, bx, by, xc, py)  # the corner, shared by both legs
        if oq == 0:
            return 2
        for leg, x, y in ((horizontal, px, py), (vertical, xc, yc)):
            if leg == 1:  # the leg from the corner to (x, y) may cross: sides decide
                o = orient(ax, ay, bx, by, x, y)
                if o == 0:
                    return 2
                if o != oq:
                    par ^= 1
    return par


@njit(cache=True, nogil=True)
def _n_tested(s, slot_start, slot_cand, slot_owner, rank):  # pragma: no cover - compiled
    """How many of slot ``s``'s candidates outrank its owner (all when it has none)."""
    own = slot_owner[s]
    n = 0
    for k in range(slot_start[s], slot_start[s + 1]):
        if own >= 0 and rank[own] < rank[slot_cand[k]]:
            break
        n += 1
    return n


@njit(cache=True, nogil=True, parallel=True)
def pack_slots(slot_start, slot_cand, slot_owner, rank, cand_edge_start, cand_edges, cand_ref,
               xs, ys):  # pragma: no cover - compiled
    """One contiguous record per boundary cell, so that a point there reads one stretch of
    memory instead of following indices through six arrays: owner, number of candidates to
    test, then per candidate its polygon, its answer at the centre (-1: unknown) and its edges
    in the cell with their coordinates inline (only those of candidates whose centre answer is
    known). Float coordinates are stored as their bits; read them through
    ``rec.view(np.float64)``."""
    n_slots = len(slot_start) - 1
    start = np.zeros(n_slots + 1, dtype=np.int64)
    for s in prange(n_slots):
        words = 2
        for k in range(slot_start[s], slot_start[s] + _n_tested(s, slot_start, slot_cand,
                                                                 slot_owner, rank)):
            words += 3
            if cand_ref[k] >= 0:
                words += 4 * (cand_edge_start[k + 1] - cand_edge_start[k])
        start[s + 1] = words
    for s in range(n_slots):
        start[s + 1] += start[s]
    rec = np.empty(start[n_slots], dtype=np.int64)
    coords = rec.view(np.float64)
    for s in prange(n_slots):
        p = start[s]
        n = _n_tested(s, slot_start, slot_cand, slot_owner, rank)
        rec[p] = slot_owner[s]
        rec[p + 1] = n
        p += 2
        for k in range(slot_start[s], slot_start[s] + n):
            ne = cand_edge_start[k + 1] - cand_edge_start[k] if cand_ref[k] >= 0 else 0
            rec[p] = slot_cand[k]
            rec[p + 1] = cand_ref[k]
            rec[p + 2] = ne
            p += 3
            for j in range(cand_edge_start[k], cand_edge_start[k] + ne):
                i = cand_edges[j]
                coords[p] = xs[i]
                coords[p + 1] = ys[i]
                coords[p + 2] = xs[i + 1]
                coords[p + 3] = ys[i + 1]
                p += 4
    return start[:-1].copy(), rec


@njit(cache=True, nogil=True)
def record_candidates(rec_start, rec):  # pragma: no cover - compiled
    """Every candidate of :func:`pack_slots`' records: its slot, its polygon, its answer at the
    cell's centre, and the position of that answer in ``rec`` (tests set it to -1 to force the
    ring tests)."""
    n = 0
    for s in range(len(rec_start)):
        n += rec[rec_start[s] + 1]
    out = np.empty((4, n), dtype=np.int64)
    k = 0
    for s in range(len(rec_start)):
        p = rec_start[s] + 2
        for _ in range(rec[rec_start[s] + 1]):
            out[0, k] = s
            out[1, k] = rec[p]
            out[2, k] = rec[p + 1]
            out[3, k] = p + 1
            k += 1
            p += 3 + 4 * rec[p + 2]
    return out


# --- duplicate rows ----------------------------------------------------------------------------

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_EXP = np.uint64(0x7FF0000000000000)  # float64 exponent and mantissa bits
_MANT = np.uint64(0x000FFFFFFFFFFFFF)
#: The key of a missing cell, the same in the stream's duplicate-row check.
_NA_KEY = np.uint64(0x5A5A5A5A5A5A5A5A)


@njit(cache=True, nogil=True)
def _mix(z):  # pragma: no cover - compiled
    """splitmix64's finaliser: a bijection of 64-bit integers that scatters every bit."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, nogil=True)
def combine(h, values, seed):  # pragma: no cover - compiled
    """Fold one column's 64-bit values into the running row hashes ``h`` (in place)."""
    s = np.uint64(seed)
    for i in range(len(h)):
        h[i] = _mix(h[i] * _GOLD + _mix(values[i] + s))


@njit(cache=True, nogil=True)
def fold(h, values, seed):  # pragma: no cover - compiled
    """Fold one column's 64-bit values into the running row hashes ``h`` (in place):
    ``h * G + mix(value + seed)``. The mix is a bijection and G is odd, so rows differing in
    one column never collide, and rows differing in more collide with probability 2^-64; the
    running hash itself needs no mixing (a third of :func:`combine`'s work)."""
    s = np.uint64(seed)
    for i in range(len(h)):
        h[i] = h[i] * _GOLD + _mix(values[i] + s)


@njit(cache=True, nogil=True)
def fold_both(h1, h2, words, is_float, seed1, seed2):  # pragma: no cover - compiled
    """:func:`fold` into both row hashes in one pass over a null-free float64 or int64
    column given as its 64-bit words; for floats every NaN first becomes the missing-cell
    key (the keys the stream's duplicate-row check would build, without building them)."""
    s1 = np.uint64(seed1)
    s2 = np.uint64(seed2)
    for i in range(len(h1)):
        v = words[i]
        if is_float and (v & _EXP) == _EXP and (v & _MANT) != np.uint64(0):
            v = _NA_KEY
        h1[i] = h1[i] * _GOLD + _mix(v + s1)
        h2[i] = h2[i] * _GOLD + _mix(v + s2)


@njit(cache=True, nogil=True)
def _seen(a, b, table1, table2, used, mask):  # pragma: no cover - compiled
    """Whether the pair (a, b) is already in the open-addressing table; inserts it if not."""
    slot = _mix(a ^ b) & mask
    while used[slot]:
        if table1[slot] == a and table2[slot] == b:
            return True
        slot = (slot + np.uint64(1)) & mask
    used[slot] = True
    table1[slot] = a
    table2[slot] = b
    return False


@njit(cache=True, nogil=True)
def first_seen(h1, h2, table1, table2, used):  # pragma: no cover - compiled
    """True for rows whose (h1, h2) appeared in an earlier row, in row order (open addressing
    in a table of a power-of-two size at least twice the rows)."""
    mask = np.uint64(len(table1) - 1)
    dup = np.zeros(len(h1), dtype=np.bool_)
    for i in range(len(h1)):
        dup[i] = _seen(h1[i], h2[i], table1, table2, used, mask)
    return dup


@njit(cache=True, nogil=True, parallel=True)
def group_duplicates(offsets, h1, h2, n_shares):  # pragma: no cover - compiled
    """True for rows whose (h1, h2) appeared earlier in their own group (rows sorted by group,
    in row order within each; with ``h2`` empty, h1 alone): copies share their location,
    hence their village, so each village is checked alone with a small, cache-resident
    table. Villages are split into ``n_shares`` contiguous shares of the rows (one per
    thread), each with its own table."""
    dup = np.zeros(len(h1), dtype=np.bool_)
    pairs = len(h2) == len(h1)
    zero = np.uint64(0)
    n_groups = len(offsets) - 1
    n_shares = max(min(n_shares, n_groups), 1)
    cut = np.searchsorted(offsets, np.linspace(0, offsets[-1], n_shares + 1)[1:-1])
    starts = np.zeros(n_shares + 1, dtype=np.int64)
    starts[1:-1] = np.minimum(cut, n_groups)
    starts[-1] = n_groups
    for t in prange(n_shares):
        g0 = starts[t]
        g1 = max(starts[t + 1], g0)
        biggest = 1
        for g in range(g0, g1):
            biggest = max(biggest, offsets[g + 1] - offsets[g])
        size = 2
        while size < 2 * biggest:
            size *= 2
        table1 = np.empty(size, dtype=np.uint64)
        table2 = np.empty(size if pairs else 1, dtype=np.uint64)
        owner = np.full(size, -1, dtype=np.int64)  # the group a slot was filled for
        for g in range(g0, g1):
            s = offsets[g]
            e = offsets[g + 1]
            if e - s < 2:
                continue
            m = 2
            while m < 2 * (e - s):
                m *= 2
            mask = np.uint64(m - 1)
            for i in range(s, e):
                a = h1[i]
                b = h2[i] if pairs else zero
                slot = (a ^ b) & mask  # the hashes are mixed already: their low bits will do
                while owner[slot] == g:
                    if table1[slot] == a and (not pairs or table2[slot] == b):
                        dup[i] = True
                        break
                    slot = (slot + np.uint64(1)) & mask
                else:
                    owner[slot] = g  # a slot of an earlier group counts as empty
                    table1[slot] = a
                    if pairs:
                        table2[slot] = b
    return dup


@njit(cache=True, nogil=True, parallel=True)
def scatter(values, dest, out):  # pragma: no cover - compiled
    """``out[dest] = values``, the writes shared between threads (``dest`` has no repeats)."""
    for i in prange(len(values)):
        out[dest[i]] = values[i]


@njit(cache=True, nogil=True, parallel=True)
def interleave(values, starts, offsets, out):  # pragma: no cover - compiled
    """Rows of village-grouped runs, concatenated in ``values``, grouped by village in ``out``:
    run ``r``'s rows of group ``g`` are ``values[starts[r, g]:starts[r, g + 1]]`` and go, after
    those of the runs before it, to ``out[offsets[g]:offsets[g + 1]]`` (source order is kept
    when the runs are in source order). Whole segments are copied: no permutation is built."""
    n_runs = starts.shape[0]
    for g in prange(len(offsets) - 1):
        k = offsets[g]
        for r in range(n_runs):
            for i in range(starts[r, g], starts[r, g + 1]):
                out[k] = values[i]
                k += 1


@njit(cache=True, nogil=True)
def group_positions(groups, n_groups):  # pragma: no cover - compiled
    """The position of each row after a stable counting sort by ``groups``, and group offsets
    (the inverse of :func:`order_by_group`'s permutation: rows can be scattered in place)."""
    counts = _group_offsets(groups, n_groups)
    pos = counts[:-1].copy()
    dest = np.empty(len(groups), dtype=np.int64)
    for i in range(len(groups)):
        g = groups[i]
        dest[i] = pos[g]
        pos[g] += 1
    return dest, counts


# --- per-device statistics and device-day sampling ---------------------------------------------


@njit(cache=True, nogil=True)
def _device_order(dev, dev_ok, s, e):  # pragma: no cover - compiled
    """Rows [s, e) ordered by device key (stable), rows without a device id last."""
    m = e - s
    known = 0
    for i in range(s, e):
        if dev_ok[i]:
            known += 1
    keys = np.empty(known, dtype=np.uint64)
    idx = np.empty(m, dtype=np.int64)
    k = 0
    j = known
    for i in range(s, e):
        if dev_ok[i]:
            keys[k] = dev[i]
            idx[k] = i
            k += 1
        else:
            idx[j] = i
            j += 1
    order = np.argsort(keys, kind="mergesort")
    idx[:known] = idx[:known][order]
    return idx, known


@njit(cache=True, nogil=True)
def _median_of(values, idx, a, b, buf):  # pragma: no cover - compiled
    """Exact median of ``values[idx[a:b]]`` without NaN (NaN when none)."""
    k = 0
    for j in range(a, b):
        x = values[idx[j]]
        if not np.isnan(x):
            buf[k] = x
            k += 1
    return _select_median(buf, k)


@njit(cache=True, nogil=True, parallel=True)
def device_medians(offsets, down, up, lat, dev, dev_ok, has_up, has_lat
                   ):  # pragma: no cover - compiled
    """Per village, one row per device: the median download, upload and latency of its tests
    (a test without a device id is a device of its own). Returns device offsets and medians."""
    n = len(offsets) - 1
    groups = np.zeros(n + 1, dtype=np.int64)
    for v in prange(n):
        idx, known = _device_order(dev, dev_ok, offsets[v], offsets[v + 1])
        g = len(idx) - known
        for j in range(known):
            if j == 0 or dev[idx[j]] != dev[idx[j - 1]]:
                g += 1
        groups[v + 1] = g
    for v in range(n):
        groups[v + 1] += groups[v]
    total = groups[n]
    md = np.empty(total)
    mu = np.full(total, np.nan)
    ml = np.full(total, np.nan)
    for v in prange(n):
        s = offsets[v]
        idx, known = _device_order(dev, dev_ok, s, offsets[v + 1])
        buf = np.empty(len(idx))
        out = groups[v]
        a = 0
        while a < len(idx):
            b = a + 1
            if a < known:
                while b < known and dev[idx[b]] == dev[idx[a]]:
                    b += 1
            md[out] = _median_of(down, idx, a, b, buf)
            if has_up:
                mu[out] = _median_of(up, idx, a, b, buf)
            if has_lat:
                ml[out] = _median_of(lat, idx, a, b, buf)
            out += 1
            a = b
    return groups, md, mu, ml


@njit(cache=True, nogil=True, parallel=True)
def device_day_sample(offsets, dev, dev_ok, day, day_ok, key):  # pragma: no cover - compiled
    """True for rows left out by device-day sampling: per village and (device, day), all but
    the row with the smallest key (the earliest row on ties). Rows are in source order within
    each village."""
    out = np.zeros(len(dev), dtype=np.bool_)
    for v in prange(len(offsets) - 1):
        s = offsets[v]
        e = offsets[v + 1]
        m = 0
        for i in range(s, e):
            if dev_ok[i] and day_ok[i]:
                m += 1
        if m < 2:
            continue
        rows = np.empty(m, dtype=np.int64)
        k = 0
        for i in range(s, e):
            if dev_ok[i] and day_ok[i]:
                rows[k] = i
                k += 1
        # stable sorts, least significant first: key, day, device
        rows = rows[np.argsort(key[rows], kind="mergesort")]
        rows = rows[np.argsort(day[rows], kind="mergesort")]
        rows = rows[np.argsort(dev[rows], kind="mergesort")]
        for j in range(1, m):
            a = rows[j - 1]
            b = rows[j]
            if dev[a] == dev[b] and day[a] == day[b]:
                out[b] = True
    return out
