//! What a lease protects, with workers that die, stall or have wrong clocks:
//! run against SQLite and PostgreSQL alike.

mod common;

use chrono::{Duration as TimeDelta, Utc};
use common::*;
use pipeline_core::{JobStatus, JobType, Segment, Transcript};
use pipeline_store::{JobClaim, Lease, StoreError, MAX_LOST_LEASES};

/// The bound the lost-worker test sets (below the default, to stay short).
const MAX_LOST: u32 = 6;
use std::time::Duration;

fn transcript(text: &str) -> Transcript {
    Transcript {
        language: "en".into(),
        language_probability: 1.0,
        model: "tiny.en".into(),
        duration: 2.0,
        segments: vec![Segment {
            id: 0,
            start: 0.0,
            end: 2.0,
            text: text.into(),
            avg_logprob: -0.2,
            no_speech_prob: 0.01,
            compression_ratio: 1.2,
            temperature: 0.0,
            words: Vec::new(),
            speaker: None,
        }],
        speakers: Vec::new(),
    }
}

fn text_of(transcript: Option<Transcript>) -> Option<String> {
    transcript.map(|t| t.segments[0].text.clone())
}

/// A worker whose lease ran out while it was transcribing (a long GC
/// pause, a network partition) finishes after another worker took the job
/// over: whichever order the two finish in, the loser writes nothing.
#[tokio::test]
async fn a_worker_that_lost_its_lease_writes_no_transcript() {
    for (store, _dir) in stores().await {
        let (audio, _) = store
            .ingest(&new_audio("f1"), &pipeline_jobs())
            .await
            .unwrap();
        let stalled = store
            .claim("stalled", &[], Duration::from_millis(1))
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let taker = store.claim("taker", &[], LEASE).await.unwrap().unwrap();
        assert_eq!((taker.id, taker.attempt), (stalled.id, 2));

        // The stalled worker finishes first: refused, nothing stored.
        let early = store
            .complete_with_transcript(&Lease::of(&stalled), "late", &transcript("stale words"))
            .await;
        assert!(
            matches!(early, Err(StoreError::Conflict { .. })),
            "{early:?}"
        );
        assert_eq!(text_of(store.transcript(audio.id).await.unwrap()), None);

        // The holder's transcript is stored with its completion.
        store
            .complete_with_transcript(&Lease::of(&taker), "done", &transcript("fresh words"))
            .await
            .unwrap();
        // The stalled worker again, after the holder: still refused.
        let late = store
            .complete_with_transcript(&Lease::of(&stalled), "late", &transcript("stale words"))
            .await;
        assert!(matches!(late, Err(StoreError::Conflict { .. })), "{late:?}");
        assert_eq!(
            text_of(store.transcript(audio.id).await.unwrap()).as_deref(),
            Some("fresh words")
        );
        assert_eq!(
            store.job(taker.id).await.unwrap().status,
            JobStatus::Completed
        );
    }
}

/// Leases are measured on the database's clock: a worker whose own clock
/// is an hour behind cannot hand out leases that look expired to everyone
/// else, and one whose clock is an hour ahead does not take over a live
/// worker's job.
#[tokio::test]
async fn a_wrong_clock_neither_steals_nor_shortens_a_lease() {
    for (store, _dir) in stores().await {
        store
            .ingest(&new_audio("f2"), &pipeline_jobs())
            .await
            .unwrap();
        let behind = store.clone().with_clock_skew(TimeDelta::hours(-1));
        let ahead = store.clone().with_clock_skew(TimeDelta::hours(1));
        let lease = Duration::from_secs(30);
        let job = behind.claim("behind", &[], lease).await.unwrap().unwrap();
        let until = job.lease_expires_at.expect("a lease");
        let left = (until - Utc::now()).num_seconds();
        assert!((25..=35).contains(&left), "lease ends in {left} s");
        assert!(
            (behind.clock_offset() - TimeDelta::hours(1))
                .num_seconds()
                .abs()
                < 5,
            "offset {:?}",
            behind.clock_offset()
        );

        for (name, other) in [("ahead", &ahead), ("true", &store)] {
            assert!(
                other.claim(name, &[], lease).await.unwrap().is_none(),
                "{name} took a live lease"
            );
            let answer = other.claim_job(job.id, name, lease).await.unwrap();
            assert!(matches!(answer, JobClaim::Busy { .. }), "{answer:?}");
        }
        assert!(matches!(
            behind
                .heartbeat(&Lease::of(&job), None, lease)
                .await
                .unwrap(),
            pipeline_store::Heartbeat::Held { .. }
        ));
    }
}

/// Workers killed from outside (SIGKILL, the OOM killer, a lost machine)
/// are not the job's failure: a job with 3 attempts survives more lost
/// workers than that, and only a file that keeps taking its workers down
/// ends FAILED, with that reason.
#[tokio::test]
async fn lost_workers_do_not_use_up_attempts() {
    for (store, _dir) in stores().await {
        let store = store.with_max_lost_leases(MAX_LOST);
        store
            .ingest(&new_audio("f3"), &pipeline_jobs())
            .await
            .unwrap();
        let mut last = None;
        for round in 1..=MAX_LOST {
            let job = store
                .claim(&format!("doomed-{round}"), &[], Duration::from_millis(1))
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("claimable again after {} lost workers", round - 1));
            assert_eq!(job.job_type, JobType::Transcription);
            assert_eq!((job.attempt, job.lost_leases), (round, round - 1));
            assert_eq!(job.failed_attempts(), 1, "only the running attempt counts");
            tokio::time::sleep(Duration::from_millis(10)).await;
            last = Some(job);
        }
        let job = last.unwrap();
        store
            .reclaim_expired(pipeline_store::Reclaim::Transport("embedded"))
            .await
            .unwrap();
        let ended = store.job(job.id).await.unwrap();
        assert_eq!(ended.status, JobStatus::Failed);
        assert_eq!(ended.lost_leases, MAX_LOST);
        const { assert!(MAX_LOST < MAX_LOST_LEASES, "the default is higher") };
        let error = ended.error.expect("a reason");
        assert!(
            error.message.contains("vanished") && error.message.contains("crashing workers"),
            "{error}"
        );
        let trail = store.events_for_job(job.id).await.unwrap();
        assert!(
            trail
                .iter()
                .any(|e| e.message == "claimed (attempt 1 of 3, after 2 lost with their worker)"),
            "a claim counts only the attempts that count: {trail:#?}"
        );
        assert!(
            trail
                .iter()
                .any(|e| e.message.contains("worker lost 3 of at most")),
            "{trail:#?}"
        );
    }
}

/// A file whose transcription is done is rendered before the next file's
/// transcription starts: files complete one by one, not all at the end.
#[tokio::test]
async fn a_file_under_way_goes_before_files_not_started() {
    for (store, _dir) in stores().await {
        let mut files = Vec::new();
        for sha in ["g1", "g2", "g3"] {
            files.push(
                store
                    .ingest(&new_audio(sha), &pipeline_jobs())
                    .await
                    .unwrap(),
            );
        }
        let first = store.claim("w", &[], LEASE).await.unwrap().unwrap();
        assert_eq!(
            (first.audio_id, first.job_type),
            (files[0].0.id, JobType::Transcription)
        );
        store.complete(&Lease::of(&first), "done").await.unwrap();
        let next = store.claim("w", &[], LEASE).await.unwrap().unwrap();
        assert_eq!(
            (next.audio_id, next.job_type),
            (files[0].0.id, JobType::Processing),
            "the first file's rendering before the second file's transcription"
        );
        // A worker that only transcribes still gets transcriptions.
        let only = store
            .claim("t", &[JobType::Transcription], LEASE)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (only.audio_id, only.job_type),
            (files[1].0.id, JobType::Transcription)
        );
    }
}

/// A broker job whose message was never published (its worker died right
/// after the commit) is found by the sweep's query until a publish is
/// recorded; a retry is found once it is due, not before.
#[tokio::test]
async fn unsent_messages_are_found_until_sent() {
    for (store, _dir) in stores().await {
        let jobs: Vec<pipeline_store::NewJob> = pipeline_jobs()
            .into_iter()
            .map(|mut j| {
                j.transport = "redis".into();
                j
            })
            .collect();
        let (_, jobs) = store.ingest(&new_audio("h1"), &jobs).await.unwrap();
        let soon = Utc::now() + TimeDelta::seconds(10);
        let unsent = store.undispatched("redis", soon, 100).await.unwrap();
        assert_eq!(
            unsent.iter().map(|j| j.id).collect::<Vec<_>>(),
            vec![jobs[0].id],
            "the runnable one, not the one waiting on it"
        );
        assert!(store
            .undispatched("amqp", soon, 100)
            .await
            .unwrap()
            .is_empty());
        store.mark_dispatched(&[jobs[0].id]).await.unwrap();
        assert!(store
            .undispatched("redis", soon, 100)
            .await
            .unwrap()
            .is_empty());

        // Claimed from its message, then failed with a retry in a minute:
        // unsent again, but only due in a minute.
        let JobClaim::Claimed(running) = store.claim_job(jobs[0].id, "w", LEASE).await.unwrap()
        else {
            panic!("claimable")
        };
        let retry_at = Utc::now() + TimeDelta::seconds(60);
        store
            .fail(
                &Lease::of(&running),
                &pipeline_core::JobError::retryable("blip"),
                Some(retry_at),
            )
            .await
            .unwrap();
        assert!(store
            .undispatched("redis", soon, 100)
            .await
            .unwrap()
            .is_empty());
        let later = store
            .undispatched("redis", retry_at + TimeDelta::seconds(1), 100)
            .await
            .unwrap();
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].status, JobStatus::Retrying);
    }
}

/// `/metrics`' figures come from grouped reads: counts per type and
/// status, and per-type duration histograms that agree with the jobs'
/// own start and completion times.
#[tokio::test]
async fn job_metrics_are_aggregated_by_the_database() {
    for (store, _dir) in stores().await {
        for sha in ["m1", "m2", "m3"] {
            store
                .ingest(&new_audio(sha), &pipeline_jobs())
                .await
                .unwrap();
        }
        let mut durations = Vec::new();
        let mut waits = Vec::new();
        while let Some(job) = store.claim("w", &[], LEASE).await.unwrap() {
            waits.push((
                job.job_type,
                (job.started_at.unwrap() - job.available_at)
                    .num_microseconds()
                    .unwrap()
                    .max(0) as f64
                    / 1e6,
            ));
            tokio::time::sleep(Duration::from_millis(30)).await;
            let done = store.complete(&Lease::of(&job), "done").await.unwrap();
            durations.push((
                done.job_type,
                (done.completed_at.unwrap() - done.started_at.unwrap())
                    .num_microseconds()
                    .unwrap() as f64
                    / 1e6,
            ));
        }
        assert_eq!(durations.len(), 6);
        let bounds = [0.001, 0.02, 10.0];
        let metrics = store.job_metrics(&bounds).await.unwrap();
        assert_eq!(
            metrics.jobs,
            vec![
                ("PROCESSING".to_string(), "COMPLETED".to_string(), 3),
                ("TRANSCRIPTION".to_string(), "COMPLETED".to_string(), 3),
            ]
        );
        for histogram in &metrics.durations {
            let mine: Vec<f64> = durations
                .iter()
                .filter(|(t, _)| t.as_str() == histogram.job_type)
                .map(|(_, d)| *d)
                .collect();
            assert_eq!(histogram.count, 3);
            assert!(
                (histogram.sum_seconds - mine.iter().sum::<f64>()).abs() < 0.01,
                "{histogram:?} vs {mine:?}"
            );
            let expected: Vec<(f64, u64)> = bounds
                .iter()
                .map(|b| (*b, mine.iter().filter(|d| **d <= *b).count() as u64))
                .collect();
            assert_eq!(histogram.buckets, expected);
        }
        // Queue waits: from queued to started, per type.
        assert_eq!(metrics.queue_waits.len(), 2, "{metrics:?}");
        for histogram in &metrics.queue_waits {
            let mine: Vec<f64> = waits
                .iter()
                .filter(|(t, _)| t.as_str() == histogram.job_type)
                .map(|(_, w)| *w)
                .collect();
            assert_eq!(histogram.count, 3, "{histogram:?}");
            assert!(
                (histogram.sum_seconds - mine.iter().sum::<f64>()).abs() < 0.01,
                "{histogram:?} vs {mine:?}"
            );
        }
        assert!(metrics.chunk_durations.is_empty(), "{metrics:?}");
        // 12.5 s of audio per file (new_audio), three transcriptions.
        assert!((metrics.audio_seconds - 37.5).abs() < 1e-9, "{metrics:?}");
    }
}

/// Pruning deletes live segments of ended jobs past their retention and
/// keeps those of running jobs and recent ones.
#[tokio::test]
async fn prune_keeps_what_still_serves() {
    use pipeline_store::Retention;
    for (store, _dir) in stores().await {
        let mut held = Vec::new();
        for sha in ["p1", "p2"] {
            let (audio, _) = store
                .ingest(&new_audio(sha), &pipeline_jobs())
                .await
                .unwrap();
            let job = store
                .claim("w", &[JobType::Transcription], LEASE)
                .await
                .unwrap()
                .unwrap();
            store
                .add_live_segments(&Lease::of(&job), &[(0, 0.0, 1.0, "hello".to_string())])
                .await
                .unwrap();
            held.push((audio.id, job));
        }
        // The first ends; the second is still running.
        store
            .complete(&Lease::of(&held[0].1), "done")
            .await
            .unwrap();
        let segments = |id| {
            let store = store.clone();
            async move {
                store
                    .live_segments_after(0, Some(id), 10)
                    .await
                    .unwrap()
                    .len()
            }
        };
        let keep_an_hour = Retention {
            live_segments: Some(Duration::from_secs(3600)),
            delivered_webhooks: None,
            failed_webhooks: None,
        };
        assert_eq!(store.prune(&keep_an_hour).await.unwrap().live_segments, 0);
        assert_eq!(segments(held[0].0).await, 1);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let keep_nothing = Retention {
            live_segments: Some(Duration::ZERO),
            ..keep_an_hour
        };
        assert_eq!(store.prune(&keep_nothing).await.unwrap().live_segments, 1);
        assert_eq!(segments(held[0].0).await, 0, "the ended job's are gone");
        assert_eq!(segments(held[1].0).await, 1, "the running job's are kept");
    }
}
