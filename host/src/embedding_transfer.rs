//! Word-embedding transfer: a student starts with the teacher's word vectors.
//!
//! A student trained from scratch only knows the words of its training data as well as
//! that data teaches them; a rare word gets a few updates and stays near its random
//! start. A pretrained teacher already places words with similar meaning near each
//! other. [`transfer`] copies that geometry: each student token that the teacher's
//! vocabulary also has gets the teacher's row, projected onto the teacher table's top
//! principal axes when the student is narrower (384 → 128 for MiniLM → tiny), then
//! rescaled to the spread of the student's own initialisation so the learning rate
//! tuned for it still fits. Tokens the teacher lacks keep their fresh rows.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What [`transfer`] did.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TransferReport {
    /// Student rows that took the teacher's vector.
    pub rows: usize,
    /// Student vocabulary size.
    pub vocab: usize,
    /// Teacher width → student width.
    pub from_dim: usize,
    pub to_dim: usize,
    /// Share of the copied rows' variance the projection keeps (1 without projection).
    pub variance_kept: f64,
}

/// Orthonormal `d x k` basis (row-major, column j = axis j) of the top-`k` principal
/// subspace of the `n x d` rows `x` (centred by the caller), by subspace iteration on
/// the covariance: `Q ← orth(C Q)`. Deterministic for a seed.
pub fn principal_axes(x: &[f32], n: usize, d: usize, k: usize, seed: u64) -> Vec<f64> {
    assert!(k <= d && x.len() == n * d);
    // Covariance C = XᵀX / n (d x d).
    let mut c = vec![0f64; d * d];
    for row in x.chunks_exact(d) {
        for i in 0..d {
            let ri = row[i] as f64;
            if ri == 0.0 {
                continue;
            }
            let ci = &mut c[i * d..(i + 1) * d];
            for (cij, &rj) in ci.iter_mut().zip(row) {
                *cij += ri * rj as f64;
            }
        }
    }
    let scale = 1.0 / n.max(1) as f64;
    c.iter_mut().for_each(|v| *v *= scale);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut q: Vec<f64> = (0..d * k).map(|_| rng.random::<f64>() - 0.5).collect();
    orthonormalise(&mut q, d, k);
    for _ in 0..60 {
        let mut z = vec![0f64; d * k];
        for i in 0..d {
            let ci = &c[i * d..(i + 1) * d];
            let zi = &mut z[i * k..(i + 1) * k];
            for (l, &cil) in ci.iter().enumerate() {
                if cil == 0.0 {
                    continue;
                }
                let ql = &q[l * k..(l + 1) * k];
                for (zij, &qlj) in zi.iter_mut().zip(ql) {
                    *zij += cil * qlj;
                }
            }
        }
        orthonormalise(&mut z, d, k);
        q = z;
    }
    q
}

/// Modified Gram-Schmidt on the `k` columns of the row-major `d x k` matrix `m`; a
/// column that collapses (rank deficiency) is replaced by a unit vector orthogonal to
/// the ones before it.
fn orthonormalise(m: &mut [f64], d: usize, k: usize) {
    let col = |m: &[f64], j: usize| (0..d).map(|i| m[i * k + j]).collect::<Vec<f64>>();
    for j in 0..k {
        let mut v = col(m, j);
        for _pass in 0..2 {
            for p in 0..j {
                let u = col(m, p);
                let dot: f64 = v.iter().zip(&u).map(|(a, b)| a * b).sum();
                v.iter_mut().zip(&u).for_each(|(a, b)| *a -= dot * b);
            }
        }
        let mut norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        if norm < 1e-12 {
            // Try each standard basis vector until one has a component left.
            for e in 0..d {
                let mut w = vec![0f64; d];
                w[e] = 1.0;
                for p in 0..j {
                    let u = col(m, p);
                    let dot: f64 = w.iter().zip(&u).map(|(a, b)| a * b).sum();
                    w.iter_mut().zip(&u).for_each(|(a, b)| *a -= dot * b);
                }
                let n = w.iter().map(|a| a * a).sum::<f64>().sqrt();
                if n > 1e-6 {
                    v = w;
                    norm = n;
                    break;
                }
            }
        }
        for i in 0..d {
            m[i * k + j] = v[i] / norm;
        }
    }
}

/// Fills the rows of `student` (`vocab x to_dim`, row-major, the fresh initialisation)
/// whose token the teacher's vocabulary has with the teacher's row of `teacher`
/// (`teacher_vocab x from_dim`), projected to `to_dim` and rescaled to the standard
/// deviation of the fresh table. `student_vocab` and `teacher_ids` map token strings
/// to ids. Returns what it did; a student with no shared token is left unchanged.
pub fn transfer(
    student: &mut [f32],
    to_dim: usize,
    student_vocab: &HashMap<String, u32>,
    teacher: &[f32],
    from_dim: usize,
    teacher_ids: impl Fn(&str) -> Option<u32>,
    seed: u64,
) -> TransferReport {
    let vocab = student.len() / to_dim.max(1);
    let teacher_rows = teacher.len() / from_dim.max(1);
    let mut pairs: Vec<(usize, usize)> = student_vocab
        .iter()
        .filter_map(|(tok, &s)| {
            let t = teacher_ids(tok)? as usize;
            ((s as usize) < vocab && t < teacher_rows).then_some((s as usize, t))
        })
        .collect();
    pairs.sort_unstable();
    let mut report = TransferReport {
        rows: pairs.len(),
        vocab,
        from_dim,
        to_dim,
        variance_kept: 1.0,
    };
    if pairs.is_empty() || to_dim == 0 {
        return report;
    }
    let std_of = |v: &[f32]| {
        let n = v.len().max(1) as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt()
    };
    let target_std = std_of(student);

    // The copied teacher rows, centred.
    let n = pairs.len();
    let mut x: Vec<f32> = Vec::with_capacity(n * from_dim);
    for &(_, t) in &pairs {
        x.extend_from_slice(&teacher[t * from_dim..(t + 1) * from_dim]);
    }
    let mut mean = vec![0f64; from_dim];
    for row in x.chunks_exact(from_dim) {
        mean.iter_mut().zip(row).for_each(|(m, &v)| *m += v as f64);
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    for row in x.chunks_exact_mut(from_dim) {
        row.iter_mut()
            .zip(&mean)
            .for_each(|(v, &m)| *v = (*v as f64 - m) as f32);
    }

    let projected: Vec<f64> = if to_dim >= from_dim {
        // As wide or wider: copy, zero-pad the extra columns.
        let mut out = vec![0f64; n * to_dim];
        for (i, row) in x.chunks_exact(from_dim).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                out[i * to_dim + j] = v as f64;
            }
        }
        out
    } else {
        let q = principal_axes(&x, n, from_dim, to_dim, seed);
        let mut out = vec![0f64; n * to_dim];
        for (i, row) in x.chunks_exact(from_dim).enumerate() {
            let o = &mut out[i * to_dim..(i + 1) * to_dim];
            for (l, &v) in row.iter().enumerate() {
                let ql = &q[l * to_dim..(l + 1) * to_dim];
                o.iter_mut().zip(ql).for_each(|(a, &b)| *a += v as f64 * b);
            }
        }
        let total: f64 = x.iter().map(|&v| (v as f64).powi(2)).sum();
        let kept: f64 = out.iter().map(|v| v * v).sum();
        report.variance_kept = if total > 0.0 { kept / total } else { 1.0 };
        out
    };
    let n_elems = projected.len() as f64;
    let p_std = (projected.iter().map(|v| v * v).sum::<f64>() / n_elems).sqrt();
    let factor = if p_std > 0.0 { target_std / p_std } else { 0.0 };
    for (i, &(s, _)) in pairs.iter().enumerate() {
        for j in 0..to_dim {
            student[s * to_dim + j] = (projected[i * to_dim + j] * factor) as f32;
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn principal_axes_are_orthonormal_and_find_the_planted_subspace() {
        // 400 points in 12 dimensions: large variance along e0 and e1, small elsewhere.
        let (n, d, k) = (400, 12, 2);
        let mut rng = StdRng::seed_from_u64(3);
        let mut x = vec![0f32; n * d];
        for i in 0..n {
            for j in 0..d {
                let s = if j < 2 { 5.0 } else { 0.1 };
                x[i * d + j] = (rng.random::<f32>() - 0.5) * s;
            }
        }
        let q = principal_axes(&x, n, d, k, 1);
        let col = |j: usize| (0..d).map(|i| q[i * k + j]).collect::<Vec<_>>();
        let (a, b) = (col(0), col(1));
        assert!((dot(&a, &a) - 1.0).abs() < 1e-9 && (dot(&b, &b) - 1.0).abs() < 1e-9);
        assert!(dot(&a, &b).abs() < 1e-9);
        // Both axes lie in span(e0, e1).
        for v in [a, b] {
            let inside = v[0] * v[0] + v[1] * v[1];
            assert!(inside > 0.99, "{inside}");
        }
    }

    #[test]
    fn shared_tokens_take_projected_teacher_rows_and_keep_their_geometry() {
        let (tv, from) = (50, 16);
        let mut rng = StdRng::seed_from_u64(5);
        // Teacher rows of rank 3: cosine structure lives in 3 dimensions.
        let basis: Vec<f32> = (0..3 * from).map(|_| rng.random::<f32>() - 0.5).collect();
        let mut teacher = vec![0f32; tv * from];
        for r in 0..tv {
            let c: Vec<f32> = (0..3).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
            for j in 0..from {
                teacher[r * from + j] = (0..3).map(|b| c[b] * basis[b * from + j]).sum();
            }
        }
        let teacher_vocab: HashMap<String, u32> =
            (0..tv).map(|i| (format!("w{i}"), i as u32)).collect();
        // Student: 30 tokens, 20 shared (w10..w29, at other ids), 10 unknown.
        let to = 4;
        let mut student_vocab = HashMap::new();
        for i in 0..20 {
            student_vocab.insert(format!("w{}", i + 10), i as u32);
        }
        for i in 20..30 {
            student_vocab.insert(format!("new{i}"), i as u32);
        }
        let fresh: Vec<f32> = (0..30 * to)
            .map(|_| (rng.random::<f32>() - 0.5) * 0.04)
            .collect();
        let mut student = fresh.clone();
        let r = transfer(
            &mut student,
            to,
            &student_vocab,
            &teacher,
            from,
            |t| teacher_vocab.get(t).copied(),
            9,
        );
        assert_eq!((r.rows, r.vocab, r.from_dim, r.to_dim), (20, 30, 16, 4));
        assert!(r.variance_kept > 0.999, "{}", r.variance_kept);
        // Unknown tokens keep their fresh rows.
        assert_eq!(&student[20 * to..], &fresh[20 * to..]);
        // Pairwise distances between copied rows are the teacher's (centred), scaled.
        let srow = |i: usize| {
            student[i * to..(i + 1) * to]
                .iter()
                .map(|&v| v as f64)
                .collect::<Vec<_>>()
        };
        let trow = |i: usize| {
            teacher[i * from..(i + 1) * from]
                .iter()
                .map(|&v| v as f64)
                .collect::<Vec<_>>()
        };
        let dist = |a: &[f64], b: &[f64]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        let ratio0 = dist(&srow(0), &srow(1)) / dist(&trow(10), &trow(11));
        for (a, b) in [(2, 7), (3, 19), (5, 6)] {
            let ratio = dist(&srow(a), &srow(b)) / dist(&trow(a + 10), &trow(b + 10));
            assert!((ratio / ratio0 - 1.0).abs() < 1e-3, "{ratio} vs {ratio0}");
        }
        // Spread matches the fresh initialisation's.
        let std = |v: &[f32]| {
            let m = v.iter().sum::<f32>() / v.len() as f32;
            (v.iter().map(|x| (x - m).powi(2)).sum::<f32>() / v.len() as f32).sqrt()
        };
        let copied = &student[..20 * to];
        let rel = std(copied) / std(&fresh);
        assert!((0.8..1.25).contains(&rel), "{rel}");
    }
}
