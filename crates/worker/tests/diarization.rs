//! Diarized files through the worker loop, with scripted engines standing
//! in for Whisper and the diarizer (the real models are exercised by the
//! diarization crate's and the CLI's end-to-end tests): the third job runs
//! beside TRANSCRIPTION, PROCESSING merges the speakers into every output,
//! and a diarization failure fails the file like any job's.

use pipeline_asr::{AsrError, AudioSource, DecodeOptions, TranscribeObserver, Transcriber};
use pipeline_core::{AudioStatus, JobStatus, JobType, Segment, Transcript, Word};
use pipeline_diarize::{DiarizeError, Observer, Output, Samples, SpeakerCount, Turn};
use pipeline_queue::EmbeddedQueue;
use pipeline_store::Store;
use pipeline_testkit::fixture;
use pipeline_worker::{
    ingest_file, DiarizationEngine, DiarizerLoader, EngineLoader, ProcessOptions, RunUntil,
    Storage, Worker, WorkerSettings,
};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Two words, one per speaker, in one segment.
struct TwoWords {
    pause: Duration,
}

impl Transcriber for TwoWords {
    fn model_name(&self) -> &str {
        "scripted"
    }

    fn transcribe(
        &self,
        audio: &mut dyn AudioSource,
        _options: &DecodeOptions,
        observer: &mut dyn TranscribeObserver,
    ) -> Result<Transcript, AsrError> {
        let mut buf = vec![0f32; 16_000];
        while audio.read(&mut buf)? > 0 {}
        std::thread::sleep(self.pause);
        observer.on_progress(1.0, 1.0);
        let word = |start: f64, end: f64, text: &str| Word {
            start,
            end,
            word: text.into(),
            probability: 0.9,
            speaker: None,
        };
        Ok(Transcript {
            language: "en".into(),
            language_probability: 1.0,
            duration: 2.0,
            model: "scripted".into(),
            segments: vec![Segment {
                id: 0,
                start: 0.0,
                end: 2.0,
                text: " Hello world.".into(),
                avg_logprob: -0.1,
                no_speech_prob: 0.0,
                compression_ratio: 1.0,
                temperature: 0.0,
                words: vec![word(0.0, 0.9, " Hello"), word(1.1, 2.0, " world.")],
                speaker: None,
            }],
            speakers: Vec::new(),
        })
    }
}

#[derive(Clone, Copy)]
enum Diarize {
    /// Two speakers, one per second.
    TwoSpeakers,
    /// A model that is not there.
    MissingModel,
    /// Reads on until told to stop.
    Stall,
}

struct ScriptedDiarizer {
    step: Diarize,
    pause: Duration,
    calls: AtomicU32,
    /// The speaker count each call was asked for.
    asked: Mutex<Vec<SpeakerCount>>,
}

impl DiarizationEngine for ScriptedDiarizer {
    fn model_name(&self) -> &str {
        "scripted-diarizer"
    }

    fn diarize(
        &self,
        samples: &mut dyn Samples,
        count: &SpeakerCount,
        observer: &mut dyn Observer,
    ) -> Result<Output, DiarizeError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.asked.lock().unwrap().push(count.clone());
        let total = samples.duration_hint().unwrap_or(1.0);
        let mut buf = vec![0f32; 16_000];
        let mut done = 0usize;
        loop {
            if observer.is_cancelled() {
                return Err(DiarizeError::Cancelled);
            }
            let n = samples.read(&mut buf)?;
            if n == 0 {
                if matches!(self.step, Diarize::Stall) {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                break;
            }
            done += n;
            observer.on_progress(done as f64 / 16_000.0, total);
        }
        std::thread::sleep(self.pause);
        match self.step {
            Diarize::MissingModel => Err(DiarizeError::Model {
                path: "/nowhere/segmentation.onnx".into(),
                reason: "no such file".into(),
            }),
            _ => Ok(Output {
                turns: vec![
                    Turn {
                        start: 0.0,
                        end: 1.0,
                        speaker: 0,
                    },
                    Turn {
                        start: 1.0,
                        end: 2.0,
                        speaker: 1,
                    },
                ],
                speakers: 2,
                duration: total,
            }),
        }
    }
}

struct Setup {
    store: Store,
    worker: Arc<Worker>,
    audio_id: uuid::Uuid,
    diarizer: Arc<ScriptedDiarizer>,
    _dir: tempfile::TempDir,
}

async fn setup(options: ProcessOptions, step: Diarize, pause: Duration, slots: usize) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}/p.db", dir.path().display()))
        .await
        .unwrap();
    let storage = Storage::local(dir.path()).unwrap();
    let queue = Arc::new(EmbeddedQueue::new(store.clone()));
    let ingested = ingest_file(
        &store,
        queue.as_ref(),
        &storage,
        &fixture("speech.wav"),
        &options,
        3,
        false,
    )
    .await
    .unwrap();
    let engine: EngineLoader =
        Arc::new(move || Ok(Arc::new(TwoWords { pause }) as Arc<dyn Transcriber>));
    let diarizer = Arc::new(ScriptedDiarizer {
        step,
        pause,
        calls: AtomicU32::new(0),
        asked: Mutex::new(Vec::new()),
    });
    let for_loader = diarizer.clone();
    let diarizer_loader: DiarizerLoader =
        Arc::new(move || Ok(for_loader.clone() as Arc<dyn DiarizationEngine>));
    let settings = WorkerSettings {
        id: "test-worker".into(),
        concurrency: slots,
        lease: Duration::from_secs(30),
        heartbeat: Duration::from_secs(1),
        job_timeout: Duration::from_secs(60),
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(100),
        output_dir: dir.path().join("outputs"),
        data_dir: dir.path().to_path_buf(),
        poll_interval: Duration::from_millis(20),
        max_attempts: 3,
        ingest_defaults: ProcessOptions::default(),
        ingest_roots: Vec::new(),
        retention: pipeline_store::Retention::default(),
        cache_retention: None,
        chunk_seconds: 0,
        vad_files: None,
    };
    let worker =
        Worker::new(store.clone(), queue, storage, settings, engine).with_diarizer(diarizer_loader);
    Setup {
        store,
        worker: Arc::new(worker),
        audio_id: ingested.audio.id,
        diarizer,
        _dir: dir,
    }
}

fn diarized(count: SpeakerCount) -> ProcessOptions {
    let mut options = ProcessOptions::default();
    options.set_diarization(true, count, false);
    options
}

#[tokio::test]
async fn a_diarized_file_gets_speakers_in_every_output() {
    let count = SpeakerCount {
        speakers: Some(2),
        ..SpeakerCount::default()
    };
    let s = setup(
        diarized(count.clone()),
        Diarize::TwoSpeakers,
        Duration::ZERO,
        1,
    )
    .await;
    s.worker
        .clone()
        .run(RunUntil::Finished(vec![s.audio_id]))
        .await
        .unwrap();
    assert_eq!(
        s.store.audio(s.audio_id).await.unwrap().status,
        AudioStatus::Completed
    );
    let jobs = s.store.jobs_for_audio(s.audio_id).await.unwrap();
    let kinds: Vec<(JobType, JobStatus)> = jobs.iter().map(|j| (j.job_type, j.status)).collect();
    assert_eq!(
        kinds,
        vec![
            (JobType::Transcription, JobStatus::Completed),
            (JobType::Diarization, JobStatus::Completed),
            (JobType::Processing, JobStatus::Completed),
        ]
    );
    assert_eq!(*s.diarizer.asked.lock().unwrap(), vec![count]);

    // The turns are stored with the job, labelled the pyannote way.
    let turns = s
        .store
        .diarization(s.audio_id)
        .await
        .unwrap()
        .expect("turns");
    assert_eq!(turns.model, "scripted-diarizer");
    let labels: Vec<&str> = turns.turns.iter().map(|t| t.speaker.as_str()).collect();
    assert_eq!(labels, vec!["SPEAKER_00", "SPEAKER_01"]);

    // The stored transcript carries them, split where the speaker changes.
    let transcript = s.store.transcript(s.audio_id).await.unwrap().unwrap();
    let speakers: Vec<Option<&str>> = transcript
        .segments
        .iter()
        .map(|seg| seg.speaker.as_deref())
        .collect();
    assert_eq!(speakers, vec![Some("SPEAKER_00"), Some("SPEAKER_01")]);
    assert_eq!(transcript.speakers.len(), 2);

    // rttm joins the default outputs, with the diarization's turns.
    let results = s.store.results(s.audio_id).await.unwrap().expect("results");
    let rttm = results.outputs.get("rttm").expect("an rttm output");
    let text = std::fs::read_to_string(rttm).unwrap();
    assert_eq!(
        text,
        "SPEAKER speech 1 0.000 1.000 <NA> <NA> SPEAKER_00 <NA> <NA>\n\
         SPEAKER speech 1 1.000 1.000 <NA> <NA> SPEAKER_01 <NA> <NA>\n"
    );
    let srt = std::fs::read_to_string(results.outputs.get("srt").unwrap()).unwrap();
    assert!(srt.contains("SPEAKER_01"), "{srt}");
}

#[tokio::test]
async fn diarization_runs_beside_transcription_when_slots_allow() {
    let s = setup(
        diarized(SpeakerCount::default()),
        Diarize::TwoSpeakers,
        Duration::from_millis(600),
        2,
    )
    .await;
    s.worker
        .clone()
        .run(RunUntil::Finished(vec![s.audio_id]))
        .await
        .unwrap();
    let jobs = s.store.jobs_for_audio(s.audio_id).await.unwrap();
    let (t, d, p) = (&jobs[0], &jobs[1], &jobs[2]);
    assert_eq!(d.job_type, JobType::Diarization);
    assert!(
        d.started_at.unwrap() < t.completed_at.unwrap()
            && t.started_at.unwrap() < d.completed_at.unwrap(),
        "the two ran at once: {t:?} {d:?}"
    );
    assert!(p.started_at.unwrap() >= t.completed_at.unwrap().max(d.completed_at.unwrap()));
}

#[tokio::test]
async fn a_failed_diarization_fails_the_file() {
    let s = setup(
        diarized(SpeakerCount::default()),
        Diarize::MissingModel,
        Duration::ZERO,
        1,
    )
    .await;
    s.worker
        .clone()
        .run(RunUntil::Finished(vec![s.audio_id]))
        .await
        .unwrap();
    assert_eq!(
        s.store.audio(s.audio_id).await.unwrap().status,
        AudioStatus::Failed
    );
    let jobs = s.store.jobs_for_audio(s.audio_id).await.unwrap();
    let d = &jobs[1];
    assert_eq!(
        (d.job_type, d.status, d.attempt),
        (JobType::Diarization, JobStatus::Failed, 1)
    );
    let error = d.error.as_ref().unwrap();
    assert_eq!(error.kind, pipeline_core::ErrorKind::Permanent);
    assert!(
        error.message.contains("install-diarization.sh"),
        "{error:?}"
    );
    assert_eq!(jobs[2].status, JobStatus::Failed);
    assert_eq!(s.diarizer.calls.load(Ordering::SeqCst), 1, "not retried");
}

#[tokio::test]
async fn cancelling_a_running_diarization_stops_it() {
    let s = setup(
        diarized(SpeakerCount::default()),
        Diarize::Stall,
        Duration::ZERO,
        1,
    )
    .await;
    let run = tokio::spawn(s.worker.clone().run(RunUntil::Finished(vec![s.audio_id])));
    let d = s.store.jobs_for_audio(s.audio_id).await.unwrap()[1].clone();
    for _ in 0..400 {
        if s.store.job(d.id).await.unwrap().status == JobStatus::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    s.store.cancel(s.audio_id, None).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("cancel is seen within a heartbeat")
        .unwrap()
        .unwrap();
    let jobs = s.store.jobs_for_audio(s.audio_id).await.unwrap();
    assert_eq!(jobs[1].status, JobStatus::Cancelled);
    assert_eq!(jobs[2].status, JobStatus::Cancelled);
    assert_eq!(
        s.store.audio(s.audio_id).await.unwrap().status,
        AudioStatus::Cancelled
    );
}

#[tokio::test]
async fn files_not_diarized_keep_two_jobs_and_no_rttm() {
    let s = setup(
        ProcessOptions::default(),
        Diarize::TwoSpeakers,
        Duration::ZERO,
        1,
    )
    .await;
    s.worker
        .clone()
        .run(RunUntil::Finished(vec![s.audio_id]))
        .await
        .unwrap();
    let jobs = s.store.jobs_for_audio(s.audio_id).await.unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(s.diarizer.calls.load(Ordering::SeqCst), 0);
    let results = s.store.results(s.audio_id).await.unwrap().unwrap();
    assert!(!results.outputs.contains_key("rttm"));
    let transcript = s.store.transcript(s.audio_id).await.unwrap().unwrap();
    assert!(!transcript.has_speakers());
}
