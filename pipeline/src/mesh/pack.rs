//! Packing charts into the texture square (step 4 of [`super::unwrap`]).
//!
//! A skyline of per-column heights at texel resolution, with each chart described by its own
//! per-column profile (lowest and highest texel row it touches in each texel column, widened by
//! the gap) rather than its bounding rectangle, so irregular charts nest into each other's
//! outlines. Charts, largest first, go to the position where they end lowest (leftmost among
//! equals), upright or turned half a turn, whichever ends lower. The uniform scale (texels per
//! world unit, the same for all charts so texel density is even) is searched in a few trials,
//! each rescaled by how high the previous one reached; the largest that fits is kept.

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
/// `(ox + sx * p.x, oy + sy * p.y)` (`sx = sy = -scale` for a chart turned half a turn).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// Texel x of chart-local x = 0.
    pub ox: f64,
    /// Texel y of chart-local y = 0.
    pub oy: f64,
    /// Texels per world unit along x (negative when turned).
    pub sx: f64,
    /// Texels per world unit along y (negative when turned).
    pub sy: f64,
}

impl Placement {
    /// Texel coordinates of chart-local point `p`.
    pub fn map(&self, p: [f64; 2]) -> [f64; 2] {
        [self.ox + self.sx * p[0], self.oy + self.sy * p[1]]
    }

    const ORIGIN: Placement = Placement { ox: 0.0, oy: 0.0, sx: 0.0, sy: 0.0 };
}

/// Packing trials while searching the scale.
const SCALE_TRIALS: usize = 8;

/// Packs `charts` into `resolution`^2 texels, keeping `gap` texels between charts and from the
/// border.
pub fn pack(charts: &[Outline<'_>], resolution: u32, gap: u32) -> Vec<Placement> {
    if charts.is_empty() {
        return Vec::new();
    }
    let res = resolution as f64;
    let area: f64 = charts.iter().map(outline_area).sum();
    // Start from 60% of the square in use, then rescale by how high each trial ended: the
    // height grows roughly linearly with the scale (area with its square).
    let mut scale = if area > 0.0 { (0.6 * res * res / area).sqrt() } else { 1.0 };
    let mut best: Option<(f64, Vec<Placement>)> = None;
    let mut too_big = f64::INFINITY;
    for trial in 0..SCALE_TRIALS + 40 {
        let (height, placed) = profile_pack(charts, resolution, gap, scale);
        let fits = height <= res;
        if fits {
            if best.as_ref().is_none_or(|b| scale > b.0) {
                best = Some((scale, placed));
            }
        } else {
            too_big = too_big.min(scale);
        }
        if trial + 1 >= SCALE_TRIALS && best.is_some() {
            break;
        }
        let mut next = scale * (res / height.max(1.0)).sqrt() * if fits { 1.0 } else { 0.995 };
        let floor = best.as_ref().map_or(0.0, |b| b.0);
        if next >= too_big || next <= floor {
            next = if too_big.is_finite() && floor > 0.0 {
                0.5 * (floor + too_big)
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
        Some((_, placed)) => placed,
        // Too many charts for the gap even at a vanishing scale: drop the gap (charts may touch).
        None if gap > 0 => pack(charts, resolution, 0),
        // More charts than texels: nothing fits; stack them at the origin (UVs stay valid).
        None => vec![Placement::ORIGIN; charts.len()],
    }
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

/// Per-column profiles on a skyline, largest first, each upright or turned.
/// Returns the height the packing reaches (infinite if a chart is wider than the square).
fn profile_pack(charts: &[Outline<'_>], resolution: u32, gap: u32, scale: f64) -> (f64, Vec<Placement>) {
    let upright: Vec<Profile> = charts.iter().map(|c| Profile::of(c, scale, gap)).collect();
    let turned: Vec<Profile> = upright.iter().map(Profile::turned).collect();
    place_all(&upright, &turned, resolution, gap, scale)
}

/// A chart's footprint at some scale: for each texel column (gap included), the lowest row it
/// needs free (`bottom`) and the first row above it (`top`), relative to its origin row.
#[derive(Debug, Clone)]
struct Profile {
    bottom: Vec<i64>,
    top: Vec<i64>,
}

impl Profile {
    /// The exact y-range of the chart's triangles in each texel column of the chart scaled by
    /// `scale` and offset by `gap / 2` texels, widened by `gap / 2` on every side.
    fn of(c: &Outline<'_>, scale: f64, gap: u32) -> Profile {
        let half = gap as f64 / 2.0;
        let cols = ((c.size[0] * scale).ceil() as usize + gap as usize).max(1);
        let mut lo = vec![f64::INFINITY; cols];
        let mut hi = vec![f64::NEG_INFINITY; cols];
        for t in c.triangles {
            let p = t.map(|i| {
                let q = c.points[i as usize];
                [q[0] * scale + half, q[1] * scale + half]
            });
            for k in 0..3 {
                segment_extent(p[k], p[(k + 1) % 3], &mut lo, &mut hi);
            }
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
        Profile { bottom, top }
    }

    /// The same footprint turned half a turn within its bounding box.
    fn turned(&self) -> Profile {
        let height = self.top.iter().copied().max().unwrap_or(0);
        Profile {
            bottom: self.top.iter().rev().map(|t| height - t).collect(),
            top: self.bottom.iter().rev().map(|b| height - b).collect(),
        }
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

/// Places every chart (largest footprint first) where its top ends lowest, on a skyline
/// `resolution` wide and unbounded upwards; returns the height reached (infinite if a chart is
/// wider than `resolution`) and the placements.
fn place_all(
    upright: &[Profile],
    turned: &[Profile],
    resolution: u32,
    gap: u32,
    scale: f64,
) -> (f64, Vec<Placement>) {
    let res = resolution as usize;
    let footprint = |p: &Profile| p.top.len() as i64 * p.top.iter().copied().max().unwrap_or(0);
    let mut order: Vec<usize> = (0..upright.len()).collect();
    order.sort_by(|&a, &b| footprint(&upright[b]).cmp(&footprint(&upright[a])).then(a.cmp(&b)));
    let mut skyline = vec![0i64; res];
    let mut out = vec![Placement::ORIGIN; upright.len()];
    let mut reached = 0i64;
    let half = gap as f64 / 2.0;
    for i in order {
        let mut best: Option<(i64, usize, i64, bool)> = None; // (top, x, y, turned)
        for (p, is_turned) in [(&upright[i], false), (&turned[i], true)] {
            let w = p.top.len();
            if w > res {
                return (f64::INFINITY, out);
            }
            let height = p.top.iter().copied().max().unwrap_or(0);
            for x in 0..=res - w {
                // Stop a candidate as soon as it cannot end lower than the best so far.
                let bound = best.map_or(i64::MAX, |b| b.0 - height);
                let mut y = 0i64;
                for c in 0..w {
                    y = y.max(skyline[x + c] - p.bottom[c]);
                    if y >= bound {
                        break;
                    }
                }
                if y < bound {
                    best = Some((y + height, x, y, is_turned));
                }
            }
        }
        let (top, x, y, is_turned) = best.expect("a chart no wider than the square has a place");
        reached = reached.max(top);
        let p = if is_turned { &turned[i] } else { &upright[i] };
        for c in 0..p.top.len() {
            skyline[x + c] = y + p.top[c];
        }
        // Texel position of local point p: upright, (x + half + scale p.x, y + half + scale p.y);
        // turned, mirrored in the footprint box [x, x + w) x [y, y + height).
        let (x, y) = (x as f64, y as f64);
        out[i] = if is_turned {
            let (w, h) = (p.top.len() as f64, p.top.iter().copied().max().unwrap_or(0) as f64);
            Placement { ox: x + w - half, oy: y + h - half, sx: -scale, sy: -scale }
        } else {
            Placement { ox: x + half, oy: y + half, sx: scale, sy: scale }
        };
    }
    (reached as f64, out)
}
