//! FlexiCubes isosurface extraction (Shen et al., "Flexible Isosurface Extraction for
//! Gradient-Based Mesh Optimization", SIGGRAPH 2023), the inference path as CRM uses it.
//!
//! Port of thu-ml/CRM at 4964e36: `util/flexicubes.py` (`FlexiCubes.construct_voxel_grid` and
//! `__call__` with `training=False`, no `grad_func`, triangle output) and
//! `util/flexicubes_geometry.py` (`FlexiCubesGeometry(grid_res, scale=2.0)`, whose `FlexiCubes`
//! has `weight_scale=0.5`). Every step is a tensor op, so the same code runs on CPU and CUDA and
//! the results, including the order of vertices and faces, are upstream's:
//!
//! 1. surface cubes: cubes whose eight corners do not all have the same sign;
//! 2. weights: `beta = tanh(.) * 0.5 + 1` (12 edges), `alpha` likewise (8 corners),
//!    `gamma = sigmoid(.) * 0.5 + 0.25` (per cube);
//! 3. case ids from corner occupancy, with the C16/C19 ambiguity resolved by inverting both
//!    cases when two ambiguous cubes share their ambiguous face (`CHECK_TABLE`);
//! 4. surface edges: the unique grid edges of surface cubes whose end points differ in sign;
//! 5. dual vertices: per dual vertex of `DMC_TABLE`, the `beta`-weighted mean of the
//!    `alpha`-weighted zero crossings of its edges;
//! 6. quads: the four dual vertices around each surface edge shared by four cubes, oriented
//!    towards positive SDF and split into two triangles along the diagonal with the larger
//!    `gamma` product.

use tch::{Device, Kind, Tensor};

mod tables;

use tables::{CHECK_TABLE, DMC_TABLE, NUM_VD_TABLE};

/// `FlexiCubesGeometry(scale=2.0)`: the grid spans [-1, 1]^3.
const GRID_SCALE: f64 = 2.0;
/// `FlexiCubes(weight_scale=0.5)` as `FlexiCubesGeometry` builds it.
const WEIGHT_SCALE: f64 = 0.5;
/// `construct_voxel_grid` rounds vertex coordinates to 1e-5 before merging shared corners.
const ROUND_SCALE: f32 = 100_000.0;

/// Corner offsets of a cube (upstream `cube_corners`): x fastest, then y, then z.
const CUBE_CORNERS: [[i64; 3]; 8] =
    [[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 1], [0, 1, 1], [1, 1, 1]];
/// The 12 cube edges as corner pairs (upstream `cube_edges`). Edges along the second axis
/// list the higher corner first; every cube lists a shared grid edge in the same direction.
const CUBE_EDGES: [i64; 24] = [0, 1, 1, 5, 4, 5, 0, 4, 2, 3, 3, 7, 6, 7, 2, 6, 2, 0, 3, 1, 7, 5, 6, 4];
/// Quad to triangles along the 0-2 diagonal (upstream `quad_split_1`).
const QUAD_SPLIT_1: [i64; 6] = [0, 1, 2, 0, 2, 3];
/// Quad to triangles along the 1-3 diagonal (upstream `quad_split_2`).
const QUAD_SPLIT_2: [i64; 6] = [0, 1, 3, 3, 1, 2];

/// `FlexiCubesGeometry(grid_res, scale=2.0)` + `FlexiCubes(weight_scale=0.5)` as CRM builds them:
/// the voxel grid the network is evaluated on, and the mesh extraction from it.
#[derive(Debug)]
pub struct FlexiCubes {
    grid_res: i64,
    device: Device,
    /// Whether the grid is the regular `(res + 1)^3` lattice in lexicographic order (see
    /// [`regular_axis`]); some steps then use its layout instead of gathers.
    regular: bool,
    /// `[N, 3]` f32 grid vertices, `N = (grid_res + 1)^3`, scaled to [-1, 1]^3.
    verts: Tensor,
    /// `[F, 8]` i64 corner indices of each cube, `F = grid_res^3`.
    cubes: Tensor,
    /// `[256, 4, 7]` i64.
    dmc_table: Tensor,
    /// `[256]` i64.
    num_vd_table: Tensor,
    /// `[256, 5]` i64.
    check_table: Tensor,
    /// `[24]` i64.
    cube_edges: Tensor,
    /// `[1, 8]` i64: 2^corner, to build case ids.
    corner_bits: Tensor,
}

impl FlexiCubes {
    /// Builds the `grid_res`^3 voxel grid on `device` as `FlexiCubesGeometry` does:
    /// `construct_voxel_grid(grid_res)`, vertices times 2 (CRM's grid spans [-1, 1]^3).
    ///
    /// The vertex order is upstream's (lexicographic in the rounded coordinates, as
    /// `torch.unique(dim=0)` sorts them): the network's weight MLP consumes features gathered by
    /// [`Self::cubes`] and the sphere prior uses the positions. The grid is built directly when
    /// upstream's rounding merges every shared corner (all resolutions below 107 and most
    /// above), else by the literal port [`construct_voxel_grid`].
    ///
    /// # Panics
    /// If `grid_res < 1`.
    pub fn new(grid_res: i64, device: Device) -> Self {
        assert!(grid_res >= 1, "FlexiCubes grid resolution must be at least 1, got {grid_res}");
        let axis = regular_axis(grid_res);
        let regular = axis.is_some();
        let (verts, cubes) = match axis {
            Some(axis) => regular_voxel_grid(&axis, grid_res, device),
            None => construct_voxel_grid(grid_res, device),
        };
        let verts = verts * GRID_SCALE;
        let i64s = |v: Vec<i64>, shape: &[i64]| Tensor::from_slice(&v).view(shape).to_device(device);
        let dmc: Vec<i64> = DMC_TABLE.iter().flatten().flatten().map(|&e| e as i64).collect();
        let num_vd: Vec<i64> = NUM_VD_TABLE.iter().map(|&n| n as i64).collect();
        let check: Vec<i64> = CHECK_TABLE.iter().flatten().map(|&e| e as i64).collect();
        Self {
            grid_res,
            device,
            regular,
            verts,
            cubes,
            dmc_table: i64s(dmc, &[256, 4, 7]),
            num_vd_table: i64s(num_vd, &[256]),
            check_table: i64s(check, &[256, 5]),
            cube_edges: i64s(CUBE_EDGES.to_vec(), &[24]),
            corner_bits: i64s((0..8).map(|i| 1 << i).collect(), &[1, 8]),
        }
    }

    /// `[N, 3]` f32 grid vertices (already scaled to [-1, 1]^3), `N = (grid_res + 1)^3`
    /// (more at the few resolutions where upstream's merge keeps near-duplicate corners, see
    /// [`construct_voxel_grid`]).
    pub fn verts(&self) -> &Tensor {
        &self.verts
    }

    /// `[F, 8]` i64 indices into [`Self::verts`] of each cube's corners (upstream `indices`),
    /// `F = grid_res^3`, cube `(i, j, k)` at row `(i * grid_res + j) * grid_res + k`.
    pub fn cubes(&self) -> &Tensor {
        &self.cubes
    }

    /// Cubes per axis.
    pub fn grid_res(&self) -> i64 {
        self.grid_res
    }

    /// The device the grid and tables live on; [`Self::extract`] takes inputs there.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Extracts the triangle mesh: upstream's `FlexiCubes.__call__(x, s, cube_fx8, res,
    /// beta_fx12=weight[:, :12], alpha_fx8=weight[:, 12:20], gamma_f=weight[:, 20],
    /// training=False)`.
    ///
    /// - `x`: `[N, 3]` f32 deformed grid vertices;
    /// - `sdf`: `[N]` f32 signed distance (negative inside);
    /// - `weight`: `[F, 21]` f32 per-cube weights (CRM's weight MLP output times 0.1).
    ///
    /// Returns `(vertices [V, 3] f32, faces [T, 3] i64)` on the grid's device, in upstream's
    /// order; both are empty when no cube crosses the surface. Every dual vertex is returned,
    /// including the few (on the grid boundary) that no face uses, as upstream does.
    ///
    /// # Panics
    /// If a shape, dtype or device differs from the above.
    pub fn extract(&self, x: &Tensor, sdf: &Tensor, weight: &Tensor) -> (Tensor, Tensor) {
        let _guard = tch::no_grad_guard();
        self.check_inputs(x, sdf, weight);

        // 1. Surface cubes (`_identify_surf_cubes`), as indices in cube order.
        let occ_n = sdf.lt(0.0);
        let occ_sum = self.inside_corner_counts(&occ_n);
        let surf_cubes = occ_sum.gt(0).logical_and(&occ_sum.lt(8)).nonzero().view([-1]);
        if surf_cubes.size()[0] == 0 {
            return (
                Tensor::zeros([0, 3], (Kind::Float, self.device)),
                Tensor::zeros([0, 3], (Kind::Int64, self.device)),
            );
        }

        // 2. Weights (`_normalize_weights`), for surface cubes only.
        let weight = weight.index_select(0, &surf_cubes);
        let beta = weight.narrow(1, 0, 12).tanh() * WEIGHT_SCALE + 1.0;
        let alpha = weight.narrow(1, 12, 8).tanh() * WEIGHT_SCALE + 1.0;
        let gamma = weight.select(1, 20).sigmoid() * WEIGHT_SCALE + (1.0 - WEIGHT_SCALE) / 2.0;

        // 3. Case ids (`_get_case_id`).
        let occ_surf =
            occ_n.index_select(0, &self.cubes.index_select(0, &surf_cubes).view([-1])).view([-1, 8]);
        let case_ids = self.case_ids(&occ_surf, &surf_cubes);

        // 4. Surface edges (`_identify_surf_edges`).
        let edges = self.surface_edges(&occ_n, &surf_cubes, x.size()[0]);

        // 5. Dual vertices (`_compute_vd`).
        let duals = self.dual_vertices(x, sdf, &case_ids, &beta, &alpha, &gamma, &edges);

        // 6. Quads and triangles (`_triangulate`).
        let faces = triangulate(sdf, &edges, &duals, self.device);
        (duals.vd, faces)
    }

    /// Per cube, how many of its corners are inside (`occ_fx8.sum(-1)` upstream).
    ///
    /// Upstream gathers all `8 F` corner flags through the cube indices (4M random reads at
    /// 80^3, half of the extraction time on a CPU); on the regular grid the same counts are the
    /// sum of eight shifted `res^3` views of the `(res + 1)^3` flag volume.
    fn inside_corner_counts(&self, occ_n: &Tensor) -> Tensor {
        if !self.regular {
            let occ_fx8 = occ_n.index_select(0, &self.cubes.view([-1])).view([-1, 8]);
            return occ_fx8.sum_dim_intlist(-1, false, Kind::Uint8);
        }
        let (res, n) = (self.grid_res, self.grid_res + 1);
        let occ = occ_n.to_kind(Kind::Uint8).view([n, n, n]);
        let corner = |[dx, dy, dz]: [i64; 3]| occ.narrow(0, dx, res).narrow(1, dy, res).narrow(2, dz, res);
        let mut sum = corner(CUBE_CORNERS[0]).contiguous();
        for offset in &CUBE_CORNERS[1..] {
            sum += corner(*offset);
        }
        sum.view([-1])
    }

    fn check_inputs(&self, x: &Tensor, sdf: &Tensor, weight: &Tensor) {
        let n = self.verts.size()[0];
        let f = self.cubes.size()[0];
        for (name, t, shape) in [("x", x, vec![n, 3]), ("sdf", sdf, vec![n]), ("weight", weight, vec![f, 21])]
        {
            assert_eq!(
                t.size(),
                shape,
                "FlexiCubes::extract: {name} must be {shape:?} for a {}^3 grid",
                self.grid_res
            );
            assert_eq!(t.kind(), Kind::Float, "FlexiCubes::extract: {name} must be f32");
            assert_eq!(t.device(), self.device, "FlexiCubes::extract: {name} must be on the grid's device");
        }
    }

    /// Marching-cubes case of each surface cube, with ambiguous C16/C19 pairs inverted.
    ///
    /// Upstream scatters the `check_table` rows of the ambiguous surface cubes into a dense
    /// `[res, res, res, 5]` volume and reads column 0 (the "ambiguous" flag) of each one's
    /// neighbour across its ambiguous face; this keeps only that column, as a flat `[res^3]`
    /// volume indexed like [`Self::cubes`].
    fn case_ids(&self, occ_surf: &Tensor, surf_cubes: &Tensor) -> Tensor {
        let res = self.grid_res;
        let mut case_ids =
            (occ_surf.to_kind(Kind::Int64) * &self.corner_bits).sum_dim_intlist(-1, false, Kind::Int64);
        let problem = self.check_table.index_select(0, &case_ids);
        let to_check = problem.select(1, 0).eq(1).nonzero().view([-1]);
        if to_check.size()[0] == 0 {
            return case_ids;
        }
        let problem = problem.index_select(0, &to_check);
        let cube = surf_cubes.index_select(0, &to_check);
        let mut ambiguous = Tensor::zeros([res * res * res], (Kind::Int64, self.device));
        let _ = ambiguous.index_put_(&[Some(&cube)], &problem.select(1, 0), false);

        let vol_idx = Tensor::stack(
            &[
                cube.floor_divide_scalar(res * res),
                cube.floor_divide_scalar(res).remainder(res),
                cube.remainder(res),
            ],
            1,
        );
        let adj = vol_idx + problem.narrow(1, 1, 3);
        let within = adj.ge(0).logical_and(&adj.lt(res)).all_dim(1, false).nonzero().view([-1]);
        let adj = adj.index_select(0, &within);
        let adj_cube = (adj.select(1, 0) * res + adj.select(1, 1)) * res + adj.select(1, 2);
        let to_invert = ambiguous.index_select(0, &adj_cube).eq(1);
        let idx = to_check.index_select(0, &within).masked_select(&to_invert);
        let inverted = problem.index_select(0, &within).select(1, 4).masked_select(&to_invert);
        let _ = case_ids.index_put_(&[Some(&idx)], &inverted, false);
        case_ids
    }

    /// The unique grid edges of the surface cubes and which of them cross the surface.
    fn surface_edges(&self, occ_n: &Tensor, surf_cubes: &Tensor, n_verts: i64) -> SurfaceEdges {
        let all_edges =
            self.cubes.index_select(0, surf_cubes).index_select(1, &self.cube_edges).view([-1, 2]);
        // torch.unique(dim=0) sorts the (a, b) rows lexicographically; with 0 <= b < n_verts the
        // key a * n_verts + b sorts the same way, and a 1-D unique is much cheaper.
        let keys = all_edges.select(1, 0) * n_verts + all_edges.select(1, 1);
        let (unique_keys, inverse, counts) = keys.internal_unique2(true, true, true);
        let unique_edges =
            Tensor::stack(&[unique_keys.floor_divide_scalar(n_verts), unique_keys.remainder(n_verts)], 1);
        let mask_edges = occ_n
            .index_select(0, &unique_edges.view([-1]))
            .view([-1, 2])
            .sum_dim_intlist(-1, false, Kind::Int64)
            .eq(1);
        let surf_edges_mask = mask_edges.index_select(0, &inverse);
        let counts = counts.index_select(0, &inverse);
        // mapping[mask_edges] = arange(mask_edges.sum()), -1 elsewhere.
        let mapping = (mask_edges.cumsum(0, Kind::Int64) - 1).masked_fill(&mask_edges.logical_not(), -1);
        let idx_map = mapping.index_select(0, &inverse);
        let surf_edges = unique_edges.index_select(0, &mask_edges.nonzero().view([-1]));
        SurfaceEdges { surf_edges, idx_map, counts, surf_edges_mask }
    }

    /// Dual vertex positions and, per (surface cube, edge), the dual vertex using that edge.
    #[allow(clippy::too_many_arguments)]
    fn dual_vertices(
        &self,
        x: &Tensor,
        sdf: &Tensor,
        case_ids: &Tensor,
        beta: &Tensor,
        alpha: &Tensor,
        gamma: &Tensor,
        edges: &SurfaceEdges,
    ) -> DualVertices {
        let opts = (Kind::Int64, self.device);
        let n_surf = case_ids.size()[0];
        let alpha_nx12x2 = alpha.index_select(1, &self.cube_edges).view([-1, 12, 2]);
        let surf_edges = edges.surf_edges.view([-1]);
        let surf_edges_x = x.index_select(0, &surf_edges).view([-1, 2, 3]);
        let surf_edges_s = sdf.index_select(0, &surf_edges).view([-1, 2, 1]);

        // Cubes are batched by their number of dual vertices, in increasing order; the dual
        // vertices are numbered batch by batch, cube by cube, as upstream's loop does.
        let num_vd = self.num_vd_table.index_select(0, case_ids);
        let (nums, _, _) = num_vd.internal_unique2(true, false, false);
        let nums = Vec::<i64>::try_from(nums.to_device(Device::Cpu)).unwrap();
        let (mut edge_group, mut to_vd, mut to_cube, mut vd_gamma) = (vec![], vec![], vec![], vec![]);
        let mut total_num_vd = 0;
        for num in nums {
            let cur_cubes = num_vd.eq(num).nonzero().view([-1]);
            let curr_num_vd = cur_cubes.size()[0] * num;
            let group = self
                .dmc_table
                .index_select(0, &case_ids.index_select(0, &cur_cubes))
                .narrow(1, 0, num)
                .reshape([-1, num * 7]);
            let group_to_vd = Tensor::arange_start(total_num_vd, total_num_vd + curr_num_vd, opts)
                .unsqueeze(-1)
                .repeat([1, 7])
                .reshape([-1, num * 7]);
            let group_to_cube = cur_cubes.unsqueeze(-1).repeat([1, num * 7]);
            let mask = group.ne(-1);
            edge_group.push(group.masked_select(&mask));
            to_vd.push(group_to_vd.masked_select(&mask));
            to_cube.push(group_to_cube.masked_select(&mask));
            vd_gamma.push(gamma.index_select(0, &cur_cubes).unsqueeze(-1).repeat([1, num]).reshape([-1]));
            total_num_vd += curr_num_vd;
        }
        let edge_group = Tensor::cat(&edge_group, 0);
        let to_vd = Tensor::cat(&to_vd, 0);
        let to_cube = Tensor::cat(&to_cube, 0);
        let vd_gamma = Tensor::cat(&vd_gamma, 0);

        // Position: the beta-weighted mean of the alpha-weighted edge crossings.
        let cube_edge = to_cube * 12 + edge_group;
        let idx_group = edges.idx_map.index_select(0, &cube_edge);
        let x_group = surf_edges_x.index_select(0, &idx_group).view([-1, 2, 3]);
        let s_group = surf_edges_s.index_select(0, &idx_group).view([-1, 2, 1]);
        let alpha_group = alpha_nx12x2.reshape([-1, 2]).index_select(0, &cube_edge).view([-1, 2, 1]);
        let ue_group = linear_interp(&(s_group * alpha_group), &x_group);
        let beta_group = beta.reshape([-1]).index_select(0, &cube_edge).view([-1, 1]);
        let fopts = (Kind::Float, self.device);
        let beta_sum = Tensor::zeros([total_num_vd, 1], fopts).index_add(0, &to_vd, &beta_group);
        let vd = Tensor::zeros([total_num_vd, 3], fopts).index_add(0, &to_vd, &(ue_group * &beta_group))
            / beta_sum;

        let vd_idx_map = Tensor::zeros([n_surf * 12], opts).scatter(0, &cube_edge, &to_vd);
        DualVertices { vd, vd_gamma, vd_idx_map }
    }
}

/// Per surface cube edge (`[S * 12]`, cube-major) and per crossing edge, from
/// `_identify_surf_edges`.
struct SurfaceEdges {
    /// `[E, 2]` vertex indices of the grid edges that cross the surface, sorted.
    surf_edges: Tensor,
    /// `[S * 12]` index into `surf_edges`, or -1 where the cube edge does not cross.
    idx_map: Tensor,
    /// `[S * 12]` how many surface cubes share the cube edge's grid edge.
    counts: Tensor,
    /// `[S * 12]` whether the cube edge crosses the surface.
    surf_edges_mask: Tensor,
}

/// Output of `_compute_vd`.
struct DualVertices {
    /// `[V, 3]` dual vertex positions.
    vd: Tensor,
    /// `[V]` the `gamma` of each dual vertex's cube.
    vd_gamma: Tensor,
    /// `[S * 12]` the dual vertex each surface cube edge belongs to (0 where none).
    vd_idx_map: Tensor,
}

/// Upstream's `_linear_interp`: the zero crossing of each 2-point edge, `edges_weight`
/// `[.., 2, 1]` the values at the end points, `edges_x` `[.., 2, 3]` their positions.
fn linear_interp(edges_weight: &Tensor, edges_x: &Tensor) -> Tensor {
    let edges_weight = Tensor::cat(&[edges_weight.narrow(1, 1, 1), -edges_weight.narrow(1, 0, 1)], 1);
    let denominator = edges_weight.sum_dim_intlist(1, false, Kind::Float);
    (edges_x * edges_weight).sum_dim_intlist(1, false, Kind::Float) / denominator
}

/// `_triangulate` with `training=False`: one quad per crossing edge shared by four surface
/// cubes, oriented towards positive SDF, split along the diagonal with the larger gamma product.
fn triangulate(sdf: &Tensor, edges: &SurfaceEdges, duals: &DualVertices, device: Device) -> Tensor {
    let index = |v: &[i64]| Tensor::from_slice(v).to_device(device);
    let group_mask = edges.counts.eq(4).logical_and(&edges.surf_edges_mask).nonzero().view([-1]);
    let group = edges.idx_map.index_select(0, &group_mask);
    let vd_idx = duals.vd_idx_map.index_select(0, &group_mask);
    // Stable: the four cubes of a quad keep upstream's (cube, edge) order.
    let (edge_indices, order) = group.sort_stable(true, 0, false);
    let quad_vd_idx = vd_idx.index_select(0, &order).view([-1, 4]);

    let first_edge = edge_indices.view([-1, 4]).select(1, 0);
    let s_edges =
        sdf.index_select(0, &edges.surf_edges.index_select(0, &first_edge).view([-1])).view([-1, 2]);
    let flip = s_edges.select(1, 0).gt(0.0);
    let flipped = quad_vd_idx.index_select(0, &flip.nonzero().view([-1]));
    let kept = quad_vd_idx.index_select(0, &flip.logical_not().nonzero().view([-1]));
    let quad_vd_idx = Tensor::cat(
        &[flipped.index_select(1, &index(&[0, 1, 3, 2])), kept.index_select(1, &index(&[2, 3, 1, 0]))],
        0,
    );

    let quad_gamma = duals.vd_gamma.index_select(0, &quad_vd_idx.view([-1])).view([-1, 4]);
    let gamma_02 = quad_gamma.select(1, 0) * quad_gamma.select(1, 2);
    let gamma_13 = quad_gamma.select(1, 1) * quad_gamma.select(1, 3);
    let split_1 = gamma_02.gt_tensor(&gamma_13).unsqueeze(1);
    let faces = quad_vd_idx
        .index_select(1, &index(&QUAD_SPLIT_1))
        .where_self(&split_1, &quad_vd_idx.index_select(1, &index(&QUAD_SPLIT_2)));
    faces.view([-1, 3])
}

/// Upstream's `construct_voxel_grid(res)` op for op: vertices `[M, 3]` f32 in [-0.5, 0.5]^3
/// (unscaled) and cubes `[res^3, 8]` i64.
///
/// It merges the eight corners of every cube by `torch.unique(dim=0)` over coordinates rounded
/// to 1e-5 (a sort of `8 res^3` rows). For most resolutions the two float expressions that give
/// each grid coordinate round to the same value and the result is the regular
/// `(res + 1)^3` grid that [`FlexiCubes::new`] builds directly; for some (107, 111, 159, ...)
/// they do not, `M` exceeds `(res + 1)^3` and only this path reproduces upstream.
pub fn construct_voxel_grid(res: i64, device: Device) -> (Tensor, Tensor) {
    let _guard = tch::no_grad_guard();
    let fopts = (Kind::Float, device);
    let corners: Vec<f32> = CUBE_CORNERS.iter().flatten().map(|&c| c as f32).collect();
    let cube_corners = Tensor::from_slice(&corners).view([8, 3]).to_device(device);
    let res_t = Tensor::full([1, 3], res as f64, fopts);
    let coords = Tensor::ones([res, res, res], fopts).nonzero().to_kind(Kind::Float) / &res_t;
    let verts = (cube_corners.unsqueeze(0) / &res_t + coords.unsqueeze(1)).reshape([-1, 3]);
    let n_cubes = coords.size()[0];
    let cubes = Tensor::arange(8, (Kind::Int64, device)).unsqueeze(0)
        + Tensor::arange(n_cubes, (Kind::Int64, device)).unsqueeze(1) * 8;

    let verts_rounded = (verts * f64::from(ROUND_SCALE)).round() / f64::from(ROUND_SCALE);
    let (verts_unique, inverse, _) = verts_rounded.unique_dim(0, true, true, false);
    let cubes = inverse.index_select(0, &cubes.view([-1])).view([-1, 8]);
    (verts_unique - 0.5, cubes)
}

/// The grid coordinates `construct_voxel_grid(res)` produces along one axis, `res + 1` values
/// in [-0.5, 0.5] (unscaled), or `None` when corner `i` of cube `i - 1` and corner 0 of cube `i`
/// round to different values (then upstream's merge keeps both and only
/// [`construct_voxel_grid`] reproduces it).
///
/// Computed with upstream's f32 operations in the same order: `coord = i / res`,
/// `corner / res + coord`, `round(v * 1e5) / 1e5` (round half to even, as `torch.round`), `- 0.5`.
fn regular_axis(res: i64) -> Option<Vec<f32>> {
    let r = res as f32;
    let rounded = |v: f32| (v * ROUND_SCALE).round_ties_even() / ROUND_SCALE;
    let mut axis = Vec::with_capacity(res as usize + 1);
    for i in 0..=res {
        let from_corner_0 = (i < res).then(|| rounded(0.0 / r + i as f32 / r));
        let from_corner_1 = (i > 0).then(|| rounded(1.0 / r + (i - 1) as f32 / r));
        let v = match (from_corner_0, from_corner_1) {
            (Some(a), Some(b)) if a.to_bits() != b.to_bits() => return None,
            (Some(a), _) | (None, Some(a)) => a,
            (None, None) => unreachable!("res >= 1"),
        };
        axis.push(v - 0.5);
    }
    // torch.unique sorts; strictly increasing values keep the grid order lexicographic.
    axis.windows(2).all(|w| w[0] < w[1]).then_some(axis)
}

/// The regular grid from one axis' coordinates: vertex `(i, j, k)` at row
/// `(i * (res + 1) + j) * (res + 1) + k` (the lexicographic order `torch.unique` gives), cube
/// corners as `construct_voxel_grid` maps them.
fn regular_voxel_grid(axis: &[f32], res: i64, device: Device) -> (Tensor, Tensor) {
    let axis = Tensor::from_slice(axis).to_device(device);
    let grid = Tensor::meshgrid_indexing(&[&axis, &axis, &axis], "ij");
    let verts = Tensor::stack(&grid, -1).view([-1, 3]);

    let n = res + 1;
    let ids = Tensor::arange(res, (Kind::Int64, device));
    let base =
        (ids.view([-1, 1, 1]) * (n * n) + ids.view([1, -1, 1]) * n + ids.view([1, 1, -1])).view([-1, 1]);
    let offsets: Vec<i64> = CUBE_CORNERS.iter().map(|[x, y, z]| (x * n + y) * n + z).collect();
    let cubes = base + Tensor::from_slice(&offsets).to_device(device).view([1, 8]);
    (verts, cubes)
}
