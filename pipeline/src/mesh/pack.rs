//! Packing charts into the texture square (step 4 of [`super::unwrap`]).
//!
//! Each chart is described, at a given scale and in each of its four quarter turns, by its own
//! per-column profile (lowest and highest texel row it touches in each texel column, widened by
//! the gap; computed from the chart's border edges only) rather than its bounding rectangle. The
//! atlas is a bitmap (one bit per texel, column-major), so a chart can nest into another's
//! outline from above and also fill holes left under earlier charts' overhangs (climbing at most
//! [`MAX_HOLE_STEPS`] holes per position; above [`MANY_CHARTS`] charts, two turns and no
//! climbing, to bound the work). Charts, largest footprint first, go to the quarter turn and
//! position where they end lowest (first turn, then leftmost, among equals). The uniform scale
//! (texels per world unit, the same for all charts so texel density is even) is searched in a few
//! trials, each rescaled by how high the previous one reached; since the height is not monotone
//! in the scale, every trial that fits is a candidate.
//! The finished packing is stretched along each axis (at most [`MAX_FILL_STRETCH`]) to fill the
//! square, as xatlas does with its atlas: every gap only grows, and the candidate giving the
//! charts the most texels is kept.

/// A chart to pack: chart-local 2D points (in `[0, size]`) and its triangles.
#[derive(Debug, Clone)]
pub struct Outline<'a> {
    /// Chart-local positions, world units.
    pub points: &'a [[f64; 2]],
    /// Triangles, indices into `points`.
    pub triangles: &'a [[u32; 3]],
    /// Extent of `points` ([width, height]).
    pub size: [f64; 2],
}

/// Where a chart goes: chart-local point `p` maps to texel coordinates
/// `origin + p.x * axes[0] + p.y * axes[1]` (a quarter turn of the chart, scaled).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// Texel position of chart-local (0, 0).
    pub origin: [f64; 2],
    /// Texel images of the chart-local unit vectors along x and along y.
    pub axes: [[f64; 2]; 2],
}

impl Placement {
    /// Texel coordinates of chart-local point `p`.
    pub fn map(&self, p: [f64; 2]) -> [f64; 2] {
        [
            self.origin[0] + p[0] * self.axes[0][0] + p[1] * self.axes[1][0],
            self.origin[1] + p[0] * self.axes[0][1] + p[1] * self.axes[1][1],
        ]
    }

    const ORIGIN: Placement = Placement { origin: [0.0; 2], axes: [[0.0; 2]; 2] };
}

/// Chart-local `p` turned by `turn` quarter turns counter-clockwise within the chart's bounding
/// box `size` (the result lies in `[0, size]` or `[0, size turned]` again). Rotations keep the
/// triangles' orientation.
fn turn_point(turn: usize, p: [f64; 2], size: [f64; 2]) -> [f64; 2] {
    match turn {
        0 => p,
        1 => [size[1] - p[1], p[0]],
        2 => [size[0] - p[0], size[1] - p[1]],
        _ => [p[1], size[0] - p[0]],
    }
}

/// Packing trials while searching the scale (more trials find a slightly denser packing: on the
/// bench meshes 4 trials gave 0.0-0.7 points more utilisation than 3 for ~1.3x the time, 8 at
/// most 0.5 more than 4 for twice the time).
const SCALE_TRIALS: usize = 3;

/// Steps up through holes a chart takes at one position before it settles above everything
/// there.
pub const MAX_HOLE_STEPS: usize = 8;

/// Above this many charts the packer tries two turns and no holes above a chart's first fit
/// (the work grows with charts x turns x positions; a jagged 22k-face mesh has ~1650 charts).
pub const MANY_CHARTS: usize = 1000;

/// The most the finished atlas is stretched along one axis to fill the square.
pub const MAX_FILL_STRETCH: f64 = 1.25;

/// Packs `charts` into `resolution`^2 texels, keeping `gap` texels between charts and from the
/// border.
pub fn pack(charts: &[Outline<'_>], resolution: u32, gap: u32) -> Vec<Placement> {
    if charts.is_empty() {
        return Vec::new();
    }
    let res = resolution as f64;
    let area: f64 = charts.iter().map(outline_area).sum();
    let borders: Vec<Vec<[u32; 2]>> = charts.iter().map(border_edges).collect();
    // Start from 60% of the square in use, then rescale by how high each trial ended: the
    // height grows roughly linearly with the scale (area with its square). The height is not
    // monotone in the scale (a slightly larger scale can pack lower), so every trial that fits
    // is a candidate; the one whose stretched atlas gives the charts the most texels wins.
    let mut scale = if area > 0.0 { (0.6 * res * res / area).sqrt() } else { 1.0 };
    let mut best: Option<(f64, [f64; 2], Vec<Placement>)> = None; // (texel area, stretch, ..)
    let (mut fit, mut too_big) = (0.0f64, f64::INFINITY);
    for trial in 0..SCALE_TRIALS + 40 {
        let ([width, height], placed) = profile_pack(charts, &borders, resolution, gap, scale);
        let fits = height <= res;
        if fits {
            let stretch = [width, height].map(|e| (res / e.max(1.0)).min(MAX_FILL_STRETCH));
            let texels = scale * scale * stretch[0] * stretch[1];
            if best.as_ref().is_none_or(|b| texels > b.0) {
                best = Some((texels, stretch, placed));
            }
            fit = fit.max(scale);
        } else {
            too_big = too_big.min(scale);
        }
        if trial + 1 >= SCALE_TRIALS && best.is_some() {
            break;
        }
        let mut next = scale * (res / height.max(1.0)).sqrt() * if fits { 1.0 } else { 0.995 };
        if next >= too_big || next <= fit {
            next = if too_big.is_finite() && fit > 0.0 {
                0.5 * (fit + too_big)
            } else {
                scale * if fits { 1.1 } else { 0.8 }
            };
        }
        if next.is_nan() || next <= 0.0 || (scale - next).abs() <= scale * 1e-6 {
            if best.is_some() {
                break;
            }
            next = scale * 0.8;
        }
        scale = next;
    }
    match best {
        // Stretch the packing to fill the square: every gap grows, nothing comes closer.
        Some((_, [sx, sy], placed)) => placed
            .into_iter()
            .map(|p| Placement {
                origin: [p.origin[0] * sx, p.origin[1] * sy],
                axes: p.axes.map(|a| [a[0] * sx, a[1] * sy]),
            })
            .collect(),
        // Too many charts for the gap even at a vanishing scale: drop the gap (charts may touch).
        None if gap > 0 => pack(charts, resolution, 0),
        // More charts than texels: nothing fits; stack them at the origin (UVs stay valid).
        None => vec![Placement::ORIGIN; charts.len()],
    }
}

/// The edges of `c` that bound it: those exactly two of its triangles do not share, in a fixed
/// order. When a triangle is turned over or flat (a folded sliver), the shared edges no longer
/// bound the union, so then every edge is returned.
fn border_edges(c: &Outline<'_>) -> Vec<[u32; 2]> {
    let folded = c.triangles.iter().any(|t| {
        let [a, b, d] = t.map(|i| c.points[i as usize]);
        (b[0] - a[0]) * (d[1] - a[1]) - (b[1] - a[1]) * (d[0] - a[0]) <= 0.0
    });
    let mut edges: Vec<[u32; 2]> = c
        .triangles
        .iter()
        .flat_map(|t| [0, 1, 2].map(|k| [t[k].min(t[(k + 1) % 3]), t[k].max(t[(k + 1) % 3])]))
        .collect();
    edges.sort_unstable();
    let mut border = Vec::new();
    let mut i = 0;
    while i < edges.len() {
        let mut j = i + 1;
        while j < edges.len() && edges[j] == edges[i] {
            j += 1;
        }
        if folded || j - i != 2 {
            border.push(edges[i]);
        }
        i = j;
    }
    border
}

fn outline_area(c: &Outline<'_>) -> f64 {
    c.triangles
        .iter()
        .map(|t| {
            let [a, b, d] = t.map(|i| c.points[i as usize]);
            0.5 * ((b[0] - a[0]) * (d[1] - a[1]) - (b[1] - a[1]) * (d[0] - a[0])).abs()
        })
        .sum()
}

/// Per-column profiles, largest first, each in the quarter turn and place where it ends lowest.
/// Returns the height the packing reaches (infinite if a chart is wider than the square in every
/// turn).
fn profile_pack(
    charts: &[Outline<'_>],
    borders: &[Vec<[u32; 2]>],
    resolution: u32,
    gap: u32,
    scale: f64,
) -> ([f64; 2], Vec<Placement>) {
    let profiles: Vec<[Profile; 4]> = charts
        .iter()
        .zip(borders)
        .map(|(c, border)| [0, 1, 2, 3].map(|turn| Profile::of(c, border, scale, gap, turn)))
        .collect();
    place_all(charts, &profiles, resolution, gap, scale)
}

/// A chart's footprint at some scale and quarter turn: for each texel column (gap included), the
/// lowest row it needs free (`bottom`) and the first row above it (`top`), relative to its origin
/// row.
#[derive(Debug, Clone)]
struct Profile {
    bottom: Vec<i64>,
    top: Vec<i64>,
    /// The highest `top`.
    height: i64,
}

impl Profile {
    /// The exact y-range of the chart's triangles in each texel column of the chart turned by
    /// `turn` quarter turns, scaled by `scale` and offset by `gap / 2` texels, widened by
    /// `gap / 2` on every side.
    /// Only the chart's border edges (`border`) matter: on every vertical line the extremes of
    /// the chart lie on its border.
    fn of(c: &Outline<'_>, border: &[[u32; 2]], scale: f64, gap: u32, turn: usize) -> Profile {
        let half = gap as f64 / 2.0;
        let width = if turn.is_multiple_of(2) { c.size[0] } else { c.size[1] };
        let cols = ((width * scale).ceil() as usize + gap as usize).max(1);
        let mut lo = vec![f64::INFINITY; cols];
        let mut hi = vec![f64::NEG_INFINITY; cols];
        let texel = |i: u32| {
            let q = turn_point(turn, c.points[i as usize], c.size);
            [q[0] * scale + half, q[1] * scale + half]
        };
        for &[a, b] in border {
            segment_extent(texel(a), texel(b), &mut lo, &mut hi);
        }
        // Widen by the gap: every column also reserves its neighbours' rows within half the gap.
        let reach = half.ceil() as usize;
        let mut bottom = vec![0i64; cols];
        let mut top = vec![0i64; cols];
        for col in 0..cols {
            let (mut l, mut h) = (f64::INFINITY, f64::NEG_INFINITY);
            for n in col.saturating_sub(reach)..=(col + reach).min(cols - 1) {
                l = l.min(lo[n]);
                h = h.max(hi[n]);
            }
            if l > h {
                // A column no triangle reaches (only possible for degenerate charts).
                (l, h) = (half, half);
            }
            bottom[col] = ((l - half).floor() as i64).max(0);
            top[col] = (h + half).ceil() as i64;
        }
        let height = top.iter().copied().max().unwrap_or(0);
        Profile { bottom, top, height }
    }
}

/// Updates the per-column y-range with segment a-b clipped to each texel column it crosses.
fn segment_extent(a: [f64; 2], b: [f64; 2], lo: &mut [f64], hi: &mut [f64]) {
    let (a, b) = if a[0] <= b[0] { (a, b) } else { (b, a) };
    let last = lo.len() - 1;
    let c0 = (a[0].floor().max(0.0) as usize).min(last);
    let c1 = (b[0].floor().max(0.0) as usize).min(last);
    for col in c0..=c1 {
        let (x0, x1) = ((col as f64).max(a[0]), ((col + 1) as f64).min(b[0]));
        for x in [x0, x1] {
            let y = if b[0] > a[0] {
                a[1] + (b[1] - a[1]) * ((x - a[0]) / (b[0] - a[0])).clamp(0.0, 1.0)
            } else {
                a[1]
            };
            lo[col] = lo[col].min(y);
            hi[col] = hi[col].max(y);
        }
        if b[0] == a[0] {
            lo[col] = lo[col].min(b[1]);
            hi[col] = hi[col].max(b[1]);
        }
    }
}

/// The atlas being filled: one bit per texel, column-major (a column's rows are consecutive
/// bits), growing upwards as charts are placed.
struct Occupancy {
    /// 64-row words per column.
    words: usize,
    bits: Vec<u64>,
    /// Per column, the lowest row that starts a free run of at least `min_run` rows (below it
    /// every free run is too short for any chart's column).
    floor: Vec<i64>,
    /// The shortest row span any column of any chart needs.
    min_run: i64,
    /// Per column, the row above its highest taken row (every row from it up is free).
    sky: Vec<i64>,
}

impl Occupancy {
    fn new(columns: usize, rows: usize, min_run: i64) -> Self {
        let words = rows.div_ceil(64).max(1);
        Occupancy {
            words,
            bits: vec![0; columns * words],
            floor: vec![0; columns],
            min_run: min_run.max(1),
            sky: vec![0; columns],
        }
    }

    /// The first taken row of `col` in `[a, b)` (rows past the top are free).
    fn first_taken(&self, col: usize, a: i64, b: i64) -> Option<i64> {
        let column = &self.bits[col * self.words..(col + 1) * self.words];
        let end = b.min(self.words as i64 * 64);
        let mut r = a;
        while r < end {
            let (w, bit) = ((r / 64) as usize, r % 64);
            let mut word = column[w] >> bit;
            let span = (end - r).min(64 - bit);
            if span < 64 {
                word &= (1u64 << span) - 1;
            }
            if word != 0 {
                return Some(r + word.trailing_zeros() as i64);
            }
            r += span;
        }
        None
    }

    /// The first free row of `col` at or above `r`.
    fn next_free(&self, col: usize, r: i64) -> i64 {
        let column = &self.bits[col * self.words..(col + 1) * self.words];
        let mut r = r;
        while r < self.words as i64 * 64 {
            let (w, bit) = ((r / 64) as usize, r % 64);
            let free = !column[w] >> bit;
            if free != 0 {
                return r + free.trailing_zeros() as i64;
            }
            r += 64 - bit;
        }
        r
    }

    /// Marks rows `[a, b)` of `col` taken.
    fn take(&mut self, col: usize, a: i64, b: i64) {
        if b as usize > self.words * 64 {
            self.grow(b as usize);
        }
        let column = &mut self.bits[col * self.words..(col + 1) * self.words];
        let mut r = a;
        while r < b {
            let (w, bit) = ((r / 64) as usize, r % 64);
            let span = (b - r).min(64 - bit);
            let mask = if span == 64 { u64::MAX } else { ((1u64 << span) - 1) << bit };
            column[w] |= mask;
            r += span;
        }
        self.sky[col] = self.sky[col].max(b);
        if a < self.floor[col] + self.min_run {
            // The run at the floor got shorter: find the next one long enough.
            let mut r = self.next_free(col, self.floor[col]);
            while let Some(taken) = self.first_taken(col, r, r + self.min_run) {
                r = self.next_free(col, taken);
            }
            self.floor[col] = r;
        }
    }

    /// Room for at least `rows` rows (twice as many as needed, so growth stays rare).
    fn grow(&mut self, rows: usize) {
        let words = (2 * rows).div_ceil(64);
        let columns = self.floor.len();
        let mut bits = vec![0u64; columns * words];
        for col in 0..columns {
            bits[col * words..col * words + self.words]
                .copy_from_slice(&self.bits[col * self.words..(col + 1) * self.words]);
        }
        self.words = words;
        self.bits = bits;
    }

    /// The lowest origin row at which `p` fits at column `x`, if below `bound`. The search for
    /// a hole gives up after [`MAX_HOLE_STEPS`] steps up and takes the lowest row above
    /// everything placed in those columns (so a chart climbing through many small holes costs
    /// no more than a few).
    fn lowest_fit(&self, p: &Profile, x: usize, bound: i64, max_steps: usize) -> Option<i64> {
        let w = p.bottom.len();
        // Every non-empty profile column needs at least `min_run` free rows in a row, and no
        // such run starts under a column's floor, so this is a lower bound.
        let mut y = 0i64;
        for c in 0..w {
            if p.top[c] > p.bottom[c] {
                y = y.max(self.floor[x + c] - p.bottom[c]);
                if y >= bound {
                    return None;
                }
            }
        }
        let (mut c, mut clear, mut steps) = (0, 0, 0);
        while clear < w {
            if y >= bound {
                return None;
            }
            match self.first_taken(x + c, y + p.bottom[c], y + p.top[c]) {
                Some(_) if steps == max_steps => {
                    for c in 0..w {
                        if p.top[c] > p.bottom[c] {
                            y = y.max(self.sky[x + c] - p.bottom[c]);
                            if y >= bound {
                                return None;
                            }
                        }
                    }
                    return Some(y);
                }
                Some(row) => {
                    y = self.next_free(x + c, row) - p.bottom[c];
                    clear = 0;
                    steps += 1;
                }
                None => {
                    clear += 1;
                    c = if c + 1 == w { 0 } else { c + 1 };
                }
            }
        }
        Some(y)
    }
}

/// Places every chart (largest footprint first) in the quarter turn and at the position where
/// its top ends lowest (then the first turn, then leftmost), on an atlas `resolution` wide and
/// unbounded upwards, filling holes left under earlier charts; returns the height reached
/// (infinite if a chart is wider than `resolution` in every turn) and the placements.
fn place_all(
    charts: &[Outline<'_>],
    profiles: &[[Profile; 4]],
    resolution: u32,
    gap: u32,
    scale: f64,
) -> ([f64; 2], Vec<Placement>) {
    let res = resolution as usize;
    let footprint = |p: &Profile| p.top.len() as i64 * p.height;
    let mut order: Vec<usize> = (0..profiles.len()).collect();
    order.sort_by(|&a, &b| footprint(&profiles[b][0]).cmp(&footprint(&profiles[a][0])).then(a.cmp(&b)));
    let min_run = profiles
        .iter()
        .flatten()
        .flat_map(|p| p.bottom.iter().zip(&p.top).map(|(b, t)| t - b).filter(|&span| span > 0))
        .min()
        .unwrap_or(1);
    let mut atlas = Occupancy::new(res, res, min_run);
    // Many charts (jagged meshes): upright and half-turned only, no climbing through holes,
    // so the work per chart stays near the plain skyline's.
    let many = profiles.len() > MANY_CHARTS;
    let (turn_step, max_steps) = if many { (2, 0) } else { (1, MAX_HOLE_STEPS) };
    let mut out = vec![Placement::ORIGIN; profiles.len()];
    let (mut right, mut reached) = (0i64, 0i64);
    let half = gap as f64 / 2.0;
    let mut floor_max = Vec::with_capacity(res);
    for i in order {
        let mut best: Option<(i64, usize, i64, usize)> = None; // (top, x, y, turn)
        for (turn, p) in profiles[i].iter().enumerate().step_by(turn_step) {
            let w = p.top.len();
            if w > res {
                continue;
            }
            // A cheap lower bound per position: the highest floor under the chart less its
            // highest bottom row.
            let lowest = p.bottom.iter().copied().max().unwrap_or(0);
            window_max(&atlas.floor, w, &mut floor_max);
            for (x, &floor) in floor_max.iter().enumerate() {
                // Only a candidate that ends strictly lower than the best so far counts.
                let bound = best.map_or(i64::MAX, |b| b.0 - p.height);
                if floor - lowest >= bound {
                    continue;
                }
                if let Some(y) = atlas.lowest_fit(p, x, bound, max_steps) {
                    best = Some((y + p.height, x, y, turn));
                }
            }
        }
        let Some((top, x, y, turn)) = best else { return ([f64::INFINITY; 2], out) };
        reached = reached.max(top);
        right = right.max((x + profiles[i][turn].top.len()) as i64);
        let p = &profiles[i][turn];
        for c in 0..p.top.len() {
            if p.top[c] > p.bottom[c] {
                atlas.take(x + c, y + p.bottom[c], y + p.top[c]);
            }
        }
        // Texel position of local point q: the turned point scaled, offset by half the gap.
        let size = charts[i].size;
        let base = turn_point(turn, [0.0, 0.0], size);
        let ex = turn_point(turn, [1.0, 0.0], size);
        let ey = turn_point(turn, [0.0, 1.0], size);
        out[i] = Placement {
            origin: [x as f64 + half + scale * base[0], y as f64 + half + scale * base[1]],
            axes: [
                [scale * (ex[0] - base[0]), scale * (ex[1] - base[1])],
                [scale * (ey[0] - base[0]), scale * (ey[1] - base[1])],
            ],
        };
    }
    ([right as f64, reached as f64], out)
}

/// `out[x]` = the largest of `values[x..x + w]`, for every window inside `values` (monotone
/// deque, linear time).
fn window_max(values: &[i64], w: usize, out: &mut Vec<i64>) {
    out.clear();
    let mut deque = std::collections::VecDeque::with_capacity(w + 1);
    for (i, &v) in values.iter().enumerate() {
        while deque.back().is_some_and(|&j: &usize| values[j] <= v) {
            deque.pop_back();
        }
        deque.push_back(i);
        if deque[0] + w <= i {
            deque.pop_front();
        }
        if i + 1 >= w {
            out.push(values[deque[0]]);
        }
    }
}
