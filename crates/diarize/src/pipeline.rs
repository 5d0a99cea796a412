//! One file through the models: sliding windows read from the stream,
//! segmented, and embedded per local speaker (first pass); then the
//! embeddings are clustered and the windows' speaker activity is
//! aggregated frame by frame into global speaker turns (second pass, over
//! the few bytes a window keeps).

use crate::cluster::{self, Cut};
use crate::fbank::{self, Fbank, FRAME_LENGTH, FRAME_SHIFT, MEL_BINS};
use crate::models::{Embedder, Segmentation, LOCAL_SPEAKERS, WINDOW};
use crate::{DiarizeError, Observer, Output, Samples, Settings, SpeakerCount, Turn};

/// Samples between two segmentation frames (16.875 ms).
const FRAME_STEP: usize = 270;
/// Samples one segmentation frame sees; its middle is half of it in.
const FRAME_SPAN: usize = 721;
/// Fewest filterbank frames an embedding is computed from (0.5 s).
const MIN_EMBEDDING_FRAMES: usize = 50;
/// Most filterbank frames an embedding is computed from (3 s, the length
/// of CAM++'s training crops): the middle of a local speaker's speech.
/// Longer inputs cost time in proportion and measured no better (VoxConverse
/// aepyx: 10.1 % DER at 3 s, 12.1 % at 5 s, 11.8 % uncapped).
const MAX_EMBEDDING_FRAMES: usize = 300;
/// Share of a window's frames a local speaker must talk alone in for its
/// embedding to shape the clusters (pyannote's `min_active_ratio`).
const MIN_ACTIVE_RATIO: f64 = 0.2;
/// Share of each window's edges not trusted for counting speakers
/// (pyannote's warm-up).
const WARM_UP: f64 = 0.1;
/// Samples read from the stream at a time.
const READ_BLOCK: usize = 16_000;

/// What one window keeps for the second pass.
struct WindowRecord {
    start: usize,
    /// Active local speakers of each frame, as bits.
    masks: Vec<u8>,
    /// Index into the embeddings of each local speaker that has one.
    embeddings: [Option<usize>; LOCAL_SPEAKERS],
}

struct Embedding {
    vector: Vec<f32>,
    /// Whether it shapes the clusters (enough speech alone in its window).
    clean: bool,
}

/// A segmented window on its way to the embedder.
struct Segmented {
    start: usize,
    /// The window's samples (fewer than a window's at the end of the file).
    audio: Vec<f32>,
    masks: Vec<u8>,
}

/// What the first pass gathers.
struct FirstPass {
    windows: Vec<WindowRecord>,
    embeddings: Vec<Embedding>,
    frames_per_window: usize,
    samples: usize,
}

/// Runs the whole file.
pub(crate) fn diarize(
    segmentation: &Segmentation,
    embedder: &Embedder,
    settings: &Settings,
    pipelined: bool,
    samples: &mut dyn Samples,
    count: &SpeakerCount,
    observer: &mut dyn Observer,
) -> Result<Output, DiarizeError> {
    let FirstPass {
        windows,
        embeddings,
        frames_per_window,
        samples: read,
    } = if pipelined {
        first_pass_pipelined(segmentation, embedder, settings, samples, observer)?
    } else {
        let mut fbank = Fbank::new();
        let (mut windows, mut embeddings) = (Vec::new(), Vec::new());
        let (frames_per_window, read) = segment(segmentation, settings, samples, observer, |w| {
            let record = embed_window(embedder, &mut fbank, w, settings, &mut embeddings)?;
            windows.push(record);
            Ok(())
        })?;
        FirstPass {
            windows,
            embeddings,
            frames_per_window,
            samples: read,
        }
    };
    let duration = read as f64 / f64::from(crate::SAMPLE_RATE);
    if embeddings.is_empty() {
        return Ok(Output {
            turns: Vec::new(),
            speakers: 0,
            duration,
        });
    }
    let centroids = cluster_embeddings(&embeddings, settings, count);
    let labels: Vec<[Option<usize>; LOCAL_SPEAKERS]> = windows
        .iter()
        .map(|w| {
            let locals: Vec<usize> = (0..LOCAL_SPEAKERS)
                .filter(|&s| w.embeddings[s].is_some())
                .collect();
            let vectors: Vec<&[f32]> = locals
                .iter()
                .filter_map(|&s| w.embeddings[s].map(|i| embeddings[i].vector.as_slice()))
                .collect();
            let assigned = cluster::assign(&vectors, &centroids);
            let mut out = [None; LOCAL_SPEAKERS];
            for (&s, k) in locals.iter().zip(assigned) {
                out[s] = Some(k);
            }
            out
        })
        .collect();
    let turns = reconstruct(&windows, &labels, frames_per_window, centroids.len(), read);
    Ok(relabel(turns, duration))
}

/// Reads the stream window by window, segments each window and hands it
/// to `next`; returns the frames per window and the samples read.
fn segment(
    segmentation: &Segmentation,
    settings: &Settings,
    samples: &mut dyn Samples,
    observer: &mut dyn Observer,
    mut next: impl FnMut(Segmented) -> Result<(), DiarizeError>,
) -> Result<(usize, usize), DiarizeError> {
    let step = ((settings.step_seconds * f64::from(crate::SAMPLE_RATE)).round() as usize)
        .clamp(FRAME_STEP, WINDOW);
    let total_hint = samples.duration_hint().unwrap_or(0.0);
    let mut buffer: Vec<f32> = Vec::with_capacity(WINDOW + READ_BLOCK);
    let mut buffer_start = 0usize;
    let mut read = 0usize;
    let mut ended = false;
    let mut block = vec![0.0f32; READ_BLOCK];
    let mut start = 0usize;
    let mut frames_per_window = 0usize;
    let mut window = vec![0.0f32; WINDOW];
    loop {
        if observer.is_cancelled() {
            return Err(DiarizeError::Cancelled);
        }
        while !ended && read < start + WINDOW {
            let n = samples.read(&mut block)?;
            if n == 0 {
                ended = true;
            } else {
                buffer.extend_from_slice(&block[..n]);
                read += n;
            }
        }
        // A window is run when it holds audio the previous one did not.
        if read == 0 || (start > 0 && read + step <= start + WINDOW) {
            break;
        }
        let valid = (read - start).min(WINDOW);
        let offset = start - buffer_start;
        window[..valid].copy_from_slice(&buffer[offset..offset + valid]);
        window[valid..].fill(0.0);
        let mut masks = Vec::new();
        frames_per_window = segmentation.run(&window, &mut masks)?;
        next(Segmented {
            start,
            audio: window[..valid].to_vec(),
            masks,
        })?;
        let done = (start + valid) as f64 / f64::from(crate::SAMPLE_RATE);
        observer.on_progress(
            if total_hint > 0.0 {
                done.min(total_hint)
            } else {
                done
            },
            total_hint,
        );
        if valid < WINDOW {
            break;
        }
        start += step;
        // Keep only what later windows read.
        let drop = start.min(read) - buffer_start;
        buffer.drain(..drop);
        buffer_start += drop;
    }
    Ok((frames_per_window, read))
}

/// The first pass with segmentation on this thread and embeddings on
/// another, each model on its own core: the two networks take turns on
/// every window, so this nearly halves the wall time on two cores.
fn first_pass_pipelined(
    segmentation: &Segmentation,
    embedder: &Embedder,
    settings: &Settings,
    samples: &mut dyn Samples,
    observer: &mut dyn Observer,
) -> Result<FirstPass, DiarizeError> {
    std::thread::scope(|scope| {
        // Two windows in flight bound the memory (1.3 MB).
        let (tx, rx) = std::sync::mpsc::sync_channel::<Segmented>(2);
        let embedding = scope.spawn(move || {
            let mut fbank = Fbank::new();
            let (mut windows, mut embeddings) = (Vec::new(), Vec::new());
            for w in rx {
                windows.push(embed_window(
                    embedder,
                    &mut fbank,
                    w,
                    settings,
                    &mut embeddings,
                )?);
            }
            Ok::<_, DiarizeError>((windows, embeddings))
        });
        let segmented = segment(segmentation, settings, samples, observer, |w| {
            // A closed channel means the embedder failed: its error is
            // the one to report, below.
            tx.send(w)
                .map_err(|_| DiarizeError::Inference("embedder stopped".into()))
        });
        drop(tx);
        let embedded = embedding.join().unwrap_or_else(|_| {
            Err(DiarizeError::Inference(
                "the embedding thread panicked".into(),
            ))
        });
        match (segmented, embedded) {
            (Ok((frames_per_window, read)), Ok((windows, embeddings))) => Ok(FirstPass {
                windows,
                embeddings,
                frames_per_window,
                samples: read,
            }),
            (_, Err(e)) => Err(e),
            (Err(e), Ok(_)) => Err(e),
        }
    })
}

/// Segments one window's speakers and embeds each that talks long enough.
fn embed_window(
    embedder: &Embedder,
    fbank: &mut Fbank,
    window: Segmented,
    settings: &Settings,
    embeddings: &mut Vec<Embedding>,
) -> Result<WindowRecord, DiarizeError> {
    let Segmented {
        start,
        audio,
        masks,
    } = window;
    let mut features = Vec::new();
    fbank.compute(&audio, &mut features);
    let fbank_frames = features.len() / MEL_BINS;
    // The segmentation frame under the middle of each filterbank frame.
    let under: Vec<usize> = (0..fbank_frames)
        .map(|f| {
            let middle = (f * FRAME_SHIFT + FRAME_LENGTH / 2) as f64;
            (((middle - (FRAME_SPAN / 2) as f64) / FRAME_STEP as f64)
                .round()
                .max(0.0) as usize)
                .min(masks.len().saturating_sub(1))
        })
        .collect();
    let min_frames = MIN_EMBEDDING_FRAMES
        .max((settings.min_embedding_seconds * 100.0).round() as usize)
        .min(fbank_frames.max(1));
    let mut record = WindowRecord {
        start,
        masks,
        embeddings: [None; LOCAL_SPEAKERS],
    };
    let mut selected = Vec::new();
    for s in 0..LOCAL_SPEAKERS {
        let bit = 1u8 << s;
        let alone = record.masks.iter().filter(|&&m| m == bit).count();
        let clean = alone as f64 >= MIN_ACTIVE_RATIO * record.masks.len() as f64;
        // Frames where the speaker talks alone; where that is too little,
        // every frame the speaker talks in.
        let mut pick = |only: bool| {
            selected.clear();
            for (f, &j) in under.iter().enumerate() {
                let m = record.masks.get(j).copied().unwrap_or(0);
                if (only && m == bit) || (!only && m & bit != 0) {
                    selected.extend_from_slice(&features[f * MEL_BINS..(f + 1) * MEL_BINS]);
                }
            }
            selected.len() / MEL_BINS
        };
        let mut frames = pick(true);
        if frames < min_frames {
            frames = pick(false);
        }
        if frames < min_frames {
            continue;
        }
        if frames > MAX_EMBEDDING_FRAMES {
            let from = (frames - MAX_EMBEDDING_FRAMES) / 2;
            selected.drain(..from * MEL_BINS);
            selected.truncate(MAX_EMBEDDING_FRAMES * MEL_BINS);
            frames = MAX_EMBEDDING_FRAMES;
        }
        fbank::normalize_mean(&mut selected);
        let vector = embedder.embed(&selected, frames)?;
        record.embeddings[s] = Some(embeddings.len());
        embeddings.push(Embedding { vector, clean });
    }
    Ok(record)
}

/// The centroids of the speakers, from the embeddings that shape clusters.
fn cluster_embeddings(
    embeddings: &[Embedding],
    settings: &Settings,
    count: &SpeakerCount,
) -> Vec<Vec<f32>> {
    let mut chosen: Vec<&[f32]> = embeddings
        .iter()
        .filter(|e| e.clean)
        .map(|e| e.vector.as_slice())
        .collect();
    if chosen.len() < 2 {
        chosen = embeddings.iter().map(|e| e.vector.as_slice()).collect();
    }
    if chosen.len() > cluster::MAX_CLUSTERED {
        // Evenly over the file, so every part of it has its say.
        let n = chosen.len();
        chosen = (0..cluster::MAX_CLUSTERED)
            .map(|i| chosen[i * n / cluster::MAX_CLUSTERED])
            .collect();
    }
    let cut = Cut {
        threshold: settings.threshold,
        clusters: count.speakers.map(|n| n as usize),
        min_clusters: count.min_speakers.map_or(1, |n| n as usize),
        max_clusters: count
            .max_speakers
            .map_or(crate::MAX_SPEAKERS as usize, |n| n as usize),
    };
    cluster::cluster(&chosen, &cut)
}

/// Per-frame scores of the global speakers and speaker counts, summed over
/// the windows that cover a frame; frames are final once the next window
/// starts after them.
struct Frames {
    /// Global frame of `score[0]`.
    base: usize,
    speakers: usize,
    score: Vec<f32>,
    count: Vec<f32>,
    counted: Vec<f32>,
    count_edges: Vec<f32>,
    counted_edges: Vec<f32>,
    open: Vec<Option<usize>>,
    turns: Vec<(usize, usize, usize)>,
}

impl Frames {
    fn grow(&mut self, frame: usize) {
        let len = frame + 1 - self.base;
        if self.count.len() < len {
            self.score.resize(len * self.speakers, 0.0);
            self.count.resize(len, 0.0);
            self.counted.resize(len, 0.0);
            self.count_edges.resize(len, 0.0);
            self.counted_edges.resize(len, 0.0);
        }
    }

    /// Decides the frames before `until` and forgets them.
    fn finish_before(&mut self, until: usize) {
        let done = until.saturating_sub(self.base).min(self.count.len());
        let k = self.speakers;
        let mut order: Vec<usize> = (0..k).collect();
        for i in 0..done {
            let g = self.base + i;
            let n = if self.counted[i] > 0.0 {
                (self.count[i] / self.counted[i]).round()
            } else if self.counted_edges[i] > 0.0 {
                (self.count_edges[i] / self.counted_edges[i]).round()
            } else {
                0.0
            } as usize;
            let score = &self.score[i * k..(i + 1) * k];
            order.sort_by(|&a, &b| score[b].total_cmp(&score[a]));
            for (rank, &speaker) in order.iter().enumerate() {
                let on = rank < n && score[speaker] > 0.0;
                match (on, self.open[speaker]) {
                    (true, None) => self.open[speaker] = Some(g),
                    (false, Some(first)) => {
                        self.turns.push((first, g, speaker));
                        self.open[speaker] = None;
                    }
                    _ => {}
                }
            }
        }
        self.score.drain(..done * k);
        self.count.drain(..done);
        self.counted.drain(..done);
        self.count_edges.drain(..done);
        self.counted_edges.drain(..done);
        self.base += done;
    }
}

/// Aggregates the clustered windows into turns (frame ranges, end exclusive).
fn reconstruct(
    windows: &[WindowRecord],
    labels: &[[Option<usize>; LOCAL_SPEAKERS]],
    frames_per_window: usize,
    speakers: usize,
    samples: usize,
) -> Vec<(usize, usize, usize)> {
    let mut frames = Frames {
        base: 0,
        speakers: speakers.max(1),
        score: Vec::new(),
        count: Vec::new(),
        counted: Vec::new(),
        count_edges: Vec::new(),
        counted_edges: Vec::new(),
        open: vec![None; speakers.max(1)],
        turns: Vec::new(),
    };
    // Frames whose middle lies in the audio.
    let last_frame = samples.saturating_sub(FRAME_SPAN / 2) / FRAME_STEP;
    let warm_up = (frames_per_window as f64 * WARM_UP).round() as usize;
    let hamming: Vec<f32> = (0..frames_per_window)
        .map(|j| {
            let x = 2.0 * std::f64::consts::PI * j as f64 / (frames_per_window.max(2) - 1) as f64;
            (0.54 - 0.46 * x.cos()) as f32
        })
        .collect();
    let k = frames.speakers;
    for (w, map) in windows.iter().zip(labels) {
        let offset = w.start as f64 / FRAME_STEP as f64;
        frames.finish_before(offset.round() as usize);
        for (j, &mask) in w.masks.iter().enumerate() {
            let g = (offset + j as f64).round() as usize;
            if g > last_frame {
                break;
            }
            frames.grow(g);
            let i = g - frames.base;
            let trusted = j >= warm_up && j + warm_up < frames_per_window;
            let local = mask.count_ones() as f32;
            if trusted {
                frames.count[i] += local;
                frames.counted[i] += 1.0;
            } else {
                frames.count_edges[i] += local;
                frames.counted_edges[i] += 1.0;
            }
            for (s, label) in map.iter().enumerate() {
                if let Some(c) = label {
                    if mask & (1 << s) != 0 && *c < k {
                        frames.score[i * k + c] += hamming[j];
                    }
                }
            }
        }
    }
    frames.finish_before(usize::MAX);
    let end = frames.base;
    for (speaker, open) in std::mem::take(&mut frames.open).into_iter().enumerate() {
        if let Some(first) = open {
            frames.turns.push((first, end, speaker));
        }
    }
    frames.turns
}

/// Turns in seconds, speakers numbered by first appearance.
fn relabel(mut turns: Vec<(usize, usize, usize)>, duration: f64) -> Output {
    turns.sort_by_key(|&(first, end, speaker)| (first, end, speaker));
    let mut order: Vec<usize> = Vec::new();
    let seconds = |frame: usize| {
        ((frame * FRAME_STEP + FRAME_SPAN / 2) as f64 - FRAME_STEP as f64 / 2.0)
            / f64::from(crate::SAMPLE_RATE)
    };
    let turns: Vec<Turn> = turns
        .into_iter()
        .map(|(first, end, speaker)| {
            let id = match order.iter().position(|&s| s == speaker) {
                Some(id) => id,
                None => {
                    order.push(speaker);
                    order.len() - 1
                }
            };
            Turn {
                start: seconds(first).max(0.0),
                end: seconds(end).min(duration),
                speaker: id,
            }
        })
        .filter(|t| t.end > t.start)
        .collect();
    Output {
        speakers: order.len(),
        turns,
        duration,
    }
}
