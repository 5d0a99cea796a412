//! Files with a DIARIZATION job beside TRANSCRIPTION: PROCESSING waits for
//! both, and the three jobs share one lifecycle (cancel, failure, retry),
//! on SQLite and PostgreSQL alike.

use pipeline_core::{
    AudioStatus, Diarization, JobError, JobStatus, JobType, ProcessingJob, SpeakerTurn,
};
use pipeline_store::{Completion, Lease, NewJob, Store, StoreError};
use uuid::Uuid;

mod common;

use common::*;

/// The jobs of a file submitted with diarization.
fn diarized_jobs() -> Vec<NewJob> {
    vec![
        NewJob::new(JobType::Transcription, 3),
        NewJob::new(JobType::Diarization, 3),
        NewJob::new(JobType::Processing, 3),
    ]
}

/// The file's job of `job_type`.
async fn job_of(store: &Store, audio_id: Uuid, job_type: JobType) -> ProcessingJob {
    store
        .jobs_for_audio(audio_id)
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.job_type == job_type)
        .unwrap_or_else(|| panic!("no {job_type} job"))
}

/// Claims the file's job of `job_type` (the embedded queue, that type only).
async fn claim(store: &Store, worker: &str, job_type: JobType) -> ProcessingJob {
    let job = store
        .claim(worker, &[job_type], LEASE)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{job_type} not claimable"));
    assert_eq!(job.job_type, job_type);
    job
}

fn turns() -> Diarization {
    Diarization {
        turns: vec![
            SpeakerTurn {
                start: 0.0,
                end: 4.5,
                speaker: "SPEAKER_00".into(),
            },
            SpeakerTurn {
                start: 4.5,
                end: 12.5,
                speaker: "SPEAKER_01".into(),
            },
        ],
        model: "test-diarizer".into(),
    }
}

async fn messages(store: &Store, job_id: Uuid) -> Vec<String> {
    store
        .events_for_job(job_id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.message)
        .collect()
}

#[tokio::test]
async fn processing_is_released_only_when_both_transcription_and_diarization_completed() {
    for (store, _dir) in stores().await {
        for transcription_first in [true, false] {
            let sha = format!("both-{transcription_first}");
            let (audio, jobs) = store
                .ingest(&new_audio(&sha), &diarized_jobs())
                .await
                .unwrap();
            let statuses: Vec<(JobType, JobStatus)> =
                jobs.iter().map(|j| (j.job_type, j.status)).collect();
            assert_eq!(
                statuses,
                vec![
                    (JobType::Transcription, JobStatus::Queued),
                    (JobType::Diarization, JobStatus::Queued),
                    (JobType::Processing, JobStatus::Pending),
                ]
            );
            let p = &jobs[2];
            assert_eq!(
                messages(&store, p.id).await,
                vec!["created; waiting for TRANSCRIPTION and DIARIZATION"]
            );

            // Both run at once, on two workers.
            let t = claim(&store, "w1", JobType::Transcription).await;
            let d = claim(&store, "w2", JobType::Diarization).await;
            let (first, second) = if transcription_first {
                (&t, &d)
            } else {
                (&d, &t)
            };

            let ended = store
                .complete(&Lease::of(first), "first done")
                .await
                .unwrap();
            assert_eq!(ended.status, JobStatus::Completed);
            assert_eq!(
                job_of(&store, audio.id, JobType::Processing).await.status,
                JobStatus::Pending,
                "PROCESSING waits for {}",
                second.job_type
            );
            assert!(store.claim("w3", &[], LEASE).await.unwrap().is_none());
            assert_eq!(
                store.audio(audio.id).await.unwrap().status,
                AudioStatus::Processing
            );
            let note = format!(
                "{} completed; still waiting for {}",
                first.job_type, second.job_type
            );
            assert!(messages(&store, p.id).await.contains(&note));

            let ended = store
                .complete_with(&Lease::of(second), "second done", None)
                .await
                .unwrap();
            let released: Vec<(JobType, JobStatus)> = ended
                .file_jobs
                .iter()
                .map(|j| (j.job_type, j.status))
                .collect();
            assert_eq!(
                released,
                vec![
                    (JobType::Transcription, JobStatus::Completed),
                    (JobType::Diarization, JobStatus::Completed),
                    (JobType::Processing, JobStatus::Queued),
                ],
                "the completion reports the job it released"
            );
            let p = claim(&store, "w3", JobType::Processing).await;
            store.complete(&Lease::of(&p), "rendered").await.unwrap();
            assert_eq!(
                store.audio(audio.id).await.unwrap().status,
                AudioStatus::Completed
            );
        }
    }
}

#[tokio::test]
async fn completed_together_in_one_batch_both_release_processing() {
    for (store, _dir) in stores().await {
        let (audio, _) = store
            .ingest(&new_audio("batch"), &diarized_jobs())
            .await
            .unwrap();
        let t = claim(&store, "w", JobType::Transcription).await;
        let d = claim(&store, "w", JobType::Diarization).await;
        let (lt, ld) = (Lease::of(&t), Lease::of(&d));
        let done = [
            Completion {
                held: &lt,
                message: "transcribed",
                results: None,
            },
            Completion {
                held: &ld,
                message: "diarized",
                results: None,
            },
        ];
        store.complete_all(&done).await.unwrap();
        assert_eq!(
            job_of(&store, audio.id, JobType::Processing).await.status,
            JobStatus::Queued
        );
    }
}

#[tokio::test]
async fn files_without_diarization_keep_their_two_jobs() {
    for (store, _dir) in stores().await {
        let (audio, jobs) = store
            .ingest(&new_audio("plain"), &pipeline_jobs())
            .await
            .unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(
            messages(&store, jobs[1].id).await,
            vec!["created; waiting for TRANSCRIPTION"]
        );
        // A type the file has no job of is not waited for.
        let t = claim(&store, "w", JobType::Transcription).await;
        store.complete(&Lease::of(&t), "transcribed").await.unwrap();
        assert_eq!(
            job_of(&store, audio.id, JobType::Processing).await.status,
            JobStatus::Queued
        );
        assert!(store
            .claim("w", &[JobType::Diarization], LEASE)
            .await
            .unwrap()
            .is_none());
        assert_eq!(store.diarization(audio.id).await.unwrap(), None);
    }
}

#[tokio::test]
async fn cancelling_the_file_cancels_all_three_jobs() {
    for (store, _dir) in stores().await {
        let (audio, _) = store
            .ingest(&new_audio("cancel"), &diarized_jobs())
            .await
            .unwrap();
        let t = claim(&store, "w1", JobType::Transcription).await;
        let changed = store.cancel(audio.id, None).await.unwrap();
        assert_eq!(changed.len(), 3);
        let jobs = store.jobs_for_audio(audio.id).await.unwrap();
        assert_eq!(jobs[0].status, JobStatus::Running);
        assert!(jobs[0].cancel_requested);
        assert_eq!(jobs[1].status, JobStatus::Cancelled);
        assert_eq!(jobs[2].status, JobStatus::Cancelled);
        store.cancel_running(&Lease::of(&t)).await.unwrap();
        assert!(store
            .jobs_for_audio(audio.id)
            .await
            .unwrap()
            .iter()
            .all(|j| j.status == JobStatus::Cancelled));
        assert_eq!(
            store.audio(audio.id).await.unwrap().status,
            AudioStatus::Cancelled
        );
        assert!(store.claim("w1", &[], LEASE).await.unwrap().is_none());

        // Retrying the file runs all three again.
        let retried = store.retry(audio.id, None).await.unwrap();
        let statuses: Vec<(JobType, JobStatus)> =
            retried.iter().map(|j| (j.job_type, j.status)).collect();
        assert_eq!(
            statuses,
            vec![
                (JobType::Transcription, JobStatus::Queued),
                (JobType::Diarization, JobStatus::Queued),
                (JobType::Processing, JobStatus::Pending),
            ]
        );
    }
}

#[tokio::test]
async fn cancelling_one_job_cancels_those_waiting_for_it_only() {
    for (store, _dir) in stores().await {
        let (audio, jobs) = store
            .ingest(&new_audio("cancel-one"), &diarized_jobs())
            .await
            .unwrap();
        let changed = store.cancel(audio.id, Some(jobs[1].id)).await.unwrap();
        let cancelled: Vec<JobType> = changed.iter().map(|j| j.job_type).collect();
        assert_eq!(cancelled, vec![JobType::Diarization, JobType::Processing]);
        assert_eq!(
            job_of(&store, audio.id, JobType::Transcription)
                .await
                .status,
            JobStatus::Queued,
            "TRANSCRIPTION does not wait for DIARIZATION"
        );
        let missing = store.cancel(audio.id, Some(Uuid::new_v4())).await;
        assert!(
            matches!(missing, Err(StoreError::NotFound { .. })),
            "{missing:?}"
        );
    }
}

#[tokio::test]
async fn a_failed_diarization_fails_the_file_and_a_retry_runs_only_what_failed() {
    for (store, _dir) in stores().await {
        let (audio, _) = store
            .ingest(&new_audio("fail"), &diarized_jobs())
            .await
            .unwrap();
        let t = claim(&store, "w1", JobType::Transcription).await;
        let d = claim(&store, "w2", JobType::Diarization).await;

        // A retryable failure comes back like any job's.
        let retry_at = chrono::Utc::now() - chrono::Duration::seconds(1);
        let failed = store
            .fail(&Lease::of(&d), &JobError::retryable("blip"), Some(retry_at))
            .await
            .unwrap();
        assert_eq!(failed.status, JobStatus::Retrying);
        assert_eq!(
            job_of(&store, audio.id, JobType::Processing).await.status,
            JobStatus::Pending
        );
        let d = claim(&store, "w2", JobType::Diarization).await;
        assert_eq!(d.attempt, 2);

        // A permanent one fails it, PROCESSING with it, and the file.
        store
            .fail(
                &Lease::of(&d),
                &JobError::permanent("diarization model missing"),
                None,
            )
            .await
            .unwrap();
        let p = job_of(&store, audio.id, JobType::Processing).await;
        assert_eq!(p.status, JobStatus::Failed);
        assert_eq!(p.error.unwrap().message, "DIARIZATION failed");
        assert_eq!(
            store.audio(audio.id).await.unwrap().status,
            AudioStatus::Failed
        );

        // The transcription still ends well; the file stays FAILED.
        store.complete(&Lease::of(&t), "transcribed").await.unwrap();
        assert_eq!(
            store.audio(audio.id).await.unwrap().status,
            AudioStatus::Failed
        );
        assert_eq!(
            job_of(&store, audio.id, JobType::Processing).await.status,
            JobStatus::Failed
        );

        // Retrying the file runs DIARIZATION again and PROCESSING after it;
        // the completed transcription is kept.
        let retried = store.retry(audio.id, None).await.unwrap();
        let statuses: Vec<(JobType, JobStatus)> =
            retried.iter().map(|j| (j.job_type, j.status)).collect();
        assert_eq!(
            statuses,
            vec![
                (JobType::Diarization, JobStatus::Queued),
                (JobType::Processing, JobStatus::Pending),
            ]
        );
        assert_eq!(
            job_of(&store, audio.id, JobType::Transcription)
                .await
                .status,
            JobStatus::Completed
        );
        let d = claim(&store, "w2", JobType::Diarization).await;
        assert_eq!(d.attempt, 1, "a retry starts with fresh attempts");
        store
            .complete_with_diarization(&Lease::of(&d), "diarized", &turns())
            .await
            .unwrap();
        let p = claim(&store, "w3", JobType::Processing).await;
        store.complete(&Lease::of(&p), "rendered").await.unwrap();
        assert_eq!(
            store.audio(audio.id).await.unwrap().status,
            AudioStatus::Completed
        );
    }
}

#[tokio::test]
async fn retrying_the_transcription_leaves_the_diarization_alone() {
    for (store, _dir) in stores().await {
        let (audio, jobs) = store
            .ingest(&new_audio("retry-one"), &diarized_jobs())
            .await
            .unwrap();
        for job_type in JobType::ALL {
            let job = claim(&store, "w", job_type).await;
            store.complete(&Lease::of(&job), "done").await.unwrap();
        }
        let retried = store.retry(audio.id, Some(jobs[0].id)).await.unwrap();
        let statuses: Vec<(JobType, JobStatus)> =
            retried.iter().map(|j| (j.job_type, j.status)).collect();
        assert_eq!(
            statuses,
            vec![
                (JobType::Transcription, JobStatus::Queued),
                (JobType::Processing, JobStatus::Pending),
            ]
        );
        assert_eq!(
            job_of(&store, audio.id, JobType::Diarization).await.status,
            JobStatus::Completed
        );
        let t = claim(&store, "w", JobType::Transcription).await;
        store.complete(&Lease::of(&t), "again").await.unwrap();
        assert_eq!(
            job_of(&store, audio.id, JobType::Processing).await.status,
            JobStatus::Queued,
            "the diarization completed before counts"
        );
    }
}

#[tokio::test]
async fn speaker_turns_are_stored_with_the_completion_under_the_lease() {
    for (store, _dir) in stores().await {
        let (audio, _) = store
            .ingest(&new_audio("turns"), &diarized_jobs())
            .await
            .unwrap();
        let d = claim(&store, "w1", JobType::Diarization).await;
        // A worker that lost its lease writes nothing.
        let stale = Lease {
            attempt: d.attempt + 1,
            ..Lease::of(&d)
        };
        let late = store
            .complete_with_diarization(&stale, "late", &turns())
            .await;
        assert!(matches!(late, Err(StoreError::Conflict { .. })), "{late:?}");
        assert_eq!(store.diarization(audio.id).await.unwrap(), None);

        store
            .complete_with_diarization(&Lease::of(&d), "diarized", &turns())
            .await
            .unwrap();
        assert_eq!(store.diarization(audio.id).await.unwrap(), Some(turns()));
        // Replaced, not added to, when stored again.
        let mut fewer = turns();
        fewer.turns.truncate(1);
        store.save_diarization(audio.id, &fewer).await.unwrap();
        assert_eq!(store.diarization(audio.id).await.unwrap(), Some(fewer));
        store.delete_audio(audio.id).await.unwrap();
        assert_eq!(store.diarization(audio.id).await.unwrap(), None);
    }
}

#[tokio::test]
async fn a_refused_file_s_three_jobs_say_why() {
    for (store, _dir) in stores().await {
        let (audio, jobs) = store
            .ingest_rejected(
                &new_audio("refused"),
                &diarized_jobs(),
                &JobError::permanent("not audio"),
            )
            .await
            .unwrap();
        assert_eq!(audio.status, AudioStatus::Failed);
        let errors: Vec<(JobType, String)> = jobs
            .iter()
            .map(|j| (j.job_type, j.error.clone().unwrap().message))
            .collect();
        assert_eq!(
            errors,
            vec![
                (JobType::Transcription, "not audio".to_string()),
                (JobType::Diarization, "not audio".to_string()),
                (JobType::Processing, "TRANSCRIPTION failed".to_string()),
            ]
        );
    }
}
