//! Agglomerative clustering of unit-length speaker embeddings on cosine
//! distance with average linkage (the nearest-neighbour chain algorithm:
//! O(n²) time, one n×n matrix), cut at a distance threshold or at a number
//! of speakers, with pyannote's rule for small clusters; then each window's
//! local speakers are given distinct clusters by their centroids.

/// Most embeddings clustered at once; the others are assigned to the
/// centroids afterwards, which bounds memory (a 3,000² matrix is 36 MB)
/// and time whatever the length of the file.
pub const MAX_CLUSTERED: usize = 3_000;

/// How to cut the dendrogram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cut {
    /// Merge while the average cosine distance is below this.
    pub threshold: f32,
    /// Exactly this many clusters, when given.
    pub clusters: Option<usize>,
    /// Bounds on the number of clusters found by the threshold.
    pub min_clusters: usize,
    /// Upper bound, inclusive.
    pub max_clusters: usize,
}

fn cosine_distance(a: &[f32], b: &[f32]) -> f32 {
    1.0 - a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>()
}

/// The merges of average-linkage clustering: (slot, slot, distance) in
/// increasing distance, where a slot stands for the cluster last merged
/// into it.
fn dendrogram(points: &[&[f32]]) -> Vec<(usize, usize, f32)> {
    let n = points.len();
    let mut d = vec![0.0f32; n * n];
    for i in 0..n {
        for j in i + 1..n {
            let v = cosine_distance(points[i], points[j]);
            d[i * n + j] = v;
            d[j * n + i] = v;
        }
    }
    let mut size = vec![1usize; n];
    let mut active = vec![true; n];
    let mut merges = Vec::with_capacity(n.saturating_sub(1));
    let mut chain: Vec<usize> = Vec::new();
    let mut remaining = n;
    while remaining > 1 {
        if chain.is_empty() {
            chain.push(active.iter().position(|&a| a).unwrap_or(0));
        }
        loop {
            let a = chain[chain.len() - 1];
            let previous = chain.len().checked_sub(2).map(|i| chain[i]);
            // Ties go to the previous link, so that the chain ends.
            let mut best = previous;
            let mut best_d = previous.map_or(f32::INFINITY, |p| d[a * n + p]);
            for c in 0..n {
                if active[c] && c != a && d[a * n + c] < best_d {
                    best = Some(c);
                    best_d = d[a * n + c];
                }
            }
            let Some(b) = best else { break };
            if Some(b) == previous {
                chain.truncate(chain.len() - 2);
                let (keep, gone) = (a.min(b), a.max(b));
                let (sa, sb) = (size[keep] as f32, size[gone] as f32);
                for c in 0..n {
                    if active[c] && c != keep && c != gone {
                        let v = (sa * d[keep * n + c] + sb * d[gone * n + c]) / (sa + sb);
                        d[keep * n + c] = v;
                        d[c * n + keep] = v;
                    }
                }
                size[keep] += size[gone];
                active[gone] = false;
                remaining -= 1;
                merges.push((keep, gone, best_d));
                break;
            }
            chain.push(b);
        }
    }
    merges.sort_by(|x, y| x.2.total_cmp(&y.2));
    merges
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

/// Cluster labels 0.. of `n` points after the first `applied` merges.
fn labels(n: usize, merges: &[(usize, usize, f32)], applied: usize) -> Vec<usize> {
    let mut parent: Vec<usize> = (0..n).collect();
    for &(a, b, _) in &merges[..applied] {
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        parent[rb] = ra;
    }
    let mut ids = vec![usize::MAX; n];
    let mut next = 0;
    (0..n)
        .map(|i| {
            let r = find(&mut parent, i);
            if ids[r] == usize::MAX {
                ids[r] = next;
                next += 1;
            }
            ids[r]
        })
        .collect()
}

fn sizes(labels: &[usize]) -> Vec<usize> {
    let k = labels.iter().max().map_or(0, |m| m + 1);
    let mut s = vec![0; k];
    for &l in labels {
        s[l] += 1;
    }
    s
}

/// Unit-length centroids of the clusters in `keep` (by label), in order.
pub fn centroids(points: &[&[f32]], labels: &[usize], keep: &[usize]) -> Vec<Vec<f32>> {
    let dim = points.first().map_or(0, |p| p.len());
    keep.iter()
        .map(|&k| {
            let mut c = vec![0.0f32; dim];
            for (p, _) in points.iter().zip(labels).filter(|(_, &l)| l == k) {
                for (x, y) in c.iter_mut().zip(p.iter()) {
                    *x += y;
                }
            }
            crate::models::normalize(&mut c);
            c
        })
        .collect()
}

/// Clusters `points` (unit length) and returns the centroids of the
/// speakers found, at least one when there is a point.
pub fn cluster(points: &[&[f32]], cut: &Cut) -> Vec<Vec<f32>> {
    let n = points.len();
    if n == 0 {
        return Vec::new();
    }
    let merges = dendrogram(points);
    // pyannote's rule: a cluster of fewer embeddings is not a speaker of
    // its own but joins the nearest one that is.
    let min_size = (n as f64 * 0.1).round().clamp(1.0, 3.0) as usize;
    let large = |labels: &[usize]| -> Vec<usize> {
        sizes(labels)
            .iter()
            .enumerate()
            .filter(|(_, &s)| s >= min_size)
            .map(|(k, _)| k)
            .collect()
    };
    let by_threshold = merges.iter().take_while(|m| m.2 < cut.threshold).count();
    let mut chosen = labels(n, &merges, by_threshold);
    let found = large(&chosen).len();
    let wanted = match cut.clusters {
        Some(k) => Some(k),
        None if found < cut.min_clusters => Some(cut.min_clusters),
        None if found > cut.max_clusters => Some(cut.max_clusters),
        None => None,
    };
    if let Some(k) = wanted {
        let k = k.clamp(1, n);
        // The finest cut from the top with k large clusters, or k clusters.
        chosen = labels(n, &merges, n - k);
        for clusters in k..=n {
            let l = labels(n, &merges, n - clusters);
            if large(&l).len() == k {
                chosen = l;
                break;
            }
        }
        if large(&chosen).len() < k {
            // Too few points per cluster for the rule: take k clusters as cut.
            let all: Vec<usize> = (0..sizes(&chosen).len()).collect();
            return centroids(points, &chosen, &all);
        }
    }
    let mut keep = large(&chosen);
    if keep.is_empty() {
        keep = vec![0];
        chosen = vec![0; n];
    }
    centroids(points, &chosen, &keep)
}

/// Gives each embedding of one window a cluster, distinct clusters where
/// there are enough, the most similar ones overall.
pub fn assign(embeddings: &[&[f32]], centroids: &[Vec<f32>]) -> Vec<usize> {
    let k = centroids.len();
    let m = embeddings.len();
    if k == 0 || m == 0 {
        return vec![0; m];
    }
    let sim: Vec<Vec<f32>> = embeddings
        .iter()
        .map(|e| {
            centroids
                .iter()
                .map(|c| 1.0 - cosine_distance(e, c))
                .collect()
        })
        .collect();
    if k < m {
        return sim
            .iter()
            .map(|s| (0..k).max_by(|&a, &b| s[a].total_cmp(&s[b])).unwrap_or(0))
            .collect();
    }
    // At most three local speakers: try every injective assignment.
    let mut best = (f32::NEG_INFINITY, vec![0; m]);
    let mut current = Vec::with_capacity(m);
    fn search(
        sim: &[Vec<f32>],
        k: usize,
        current: &mut Vec<usize>,
        score: f32,
        best: &mut (f32, Vec<usize>),
    ) {
        let i = current.len();
        if i == sim.len() {
            if score > best.0 {
                *best = (score, current.clone());
            }
            return;
        }
        for c in 0..k {
            if !current.contains(&c) {
                current.push(c);
                search(sim, k, current, score + sim[i][c], best);
                current.pop();
            }
        }
    }
    search(&sim, k, &mut current, 0.0, &mut best);
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let mut v = v.to_vec();
        crate::models::normalize(&mut v);
        v
    }

    fn blobs() -> Vec<Vec<f32>> {
        let mut points = Vec::new();
        for i in 0..10 {
            let e = i as f32 * 0.01;
            points.push(unit(&[1.0, e, 0.0]));
            points.push(unit(&[e, 1.0, 0.0]));
            points.push(unit(&[0.0, e, 1.0]));
        }
        points
    }

    #[test]
    fn three_blobs_make_three_speakers() {
        let points = blobs();
        let refs: Vec<&[f32]> = points.iter().map(|p| p.as_slice()).collect();
        let cut = Cut {
            threshold: 0.5,
            clusters: None,
            min_clusters: 1,
            max_clusters: 10,
        };
        assert_eq!(cluster(&refs, &cut).len(), 3);
        assert_eq!(
            cluster(
                &refs,
                &Cut {
                    clusters: Some(2),
                    ..cut
                }
            )
            .len(),
            2
        );
        assert_eq!(
            cluster(
                &refs,
                &Cut {
                    max_clusters: 2,
                    ..cut
                }
            )
            .len(),
            2
        );
        assert_eq!(
            cluster(
                &refs,
                &Cut {
                    threshold: 2.0,
                    ..cut
                }
            )
            .len(),
            1
        );
        assert_eq!(
            cluster(
                &refs,
                &Cut {
                    threshold: 2.0,
                    min_clusters: 3,
                    ..cut
                }
            )
            .len(),
            3
        );
    }

    #[test]
    fn the_chain_matches_naive_average_linkage() {
        let points: Vec<Vec<f32>> = (0..25)
            .map(|i| {
                let x = i as f32;
                unit(&[
                    (x * 1.3).sin() + 1.5,
                    (x * 0.7).cos() + 1.5,
                    (x * 2.1).sin() + 1.5,
                ])
            })
            .collect();
        let refs: Vec<&[f32]> = points.iter().map(|p| p.as_slice()).collect();
        let heights: Vec<f32> = dendrogram(&refs).iter().map(|m| m.2).collect();
        // Naive O(n³) average linkage over explicit member lists.
        let mut clusters: Vec<Vec<usize>> = (0..refs.len()).map(|i| vec![i]).collect();
        let mut naive = Vec::new();
        while clusters.len() > 1 {
            let mut best = (f32::INFINITY, 0, 0);
            for a in 0..clusters.len() {
                for b in a + 1..clusters.len() {
                    let mut total = 0.0;
                    for &i in &clusters[a] {
                        for &j in &clusters[b] {
                            total += cosine_distance(refs[i], refs[j]);
                        }
                    }
                    let avg = total / (clusters[a].len() * clusters[b].len()) as f32;
                    if avg < best.0 {
                        best = (avg, a, b);
                    }
                }
            }
            let gone = clusters.remove(best.2);
            clusters[best.1].extend(gone);
            naive.push(best.0);
        }
        naive.sort_by(f32::total_cmp);
        for (a, b) in heights.iter().zip(&naive) {
            assert!((a - b).abs() < 1e-5, "{heights:?} vs {naive:?}");
        }
    }

    #[test]
    fn local_speakers_get_distinct_clusters() {
        let c = vec![unit(&[1.0, 0.0]), unit(&[0.0, 1.0])];
        let a = unit(&[1.0, 0.1]);
        let b = unit(&[1.0, 0.2]);
        // Both are closer to the first, but they are two people.
        assert_eq!(assign(&[&a, &b], &c), vec![0, 1]);
        assert_eq!(assign(&[&b, &a], &c), vec![1, 0]);
    }
}
