// The pipeline-manager dashboard: plain JavaScript against the HTTP API.
// Live updates come from the server-sent event streams, read with fetch()
// because EventSource cannot send the Authorization header.
'use strict';

(() => {
  const KEY_STORAGE = 'pipeline-manager.api-key';
  const FORMATS = ['txt', 'srt', 'vtt', 'json', 'tsv'];
  const ACTIVE_JOB = new Set(['PENDING', 'QUEUED', 'RUNNING', 'RETRYING']);
  const RETRYABLE_JOB = new Set(['FAILED', 'CANCELLED']);
  // The list is also polled, slowly, in case the event stream is cut by a
  // proxy that buffers or times out long responses.
  const LIST_POLL_MS = 15000;

  const $ = (id) => document.getElementById(id);
  // Ids may come from the address bar (#id): never let one change the path.
  const enc = encodeURIComponent;

  /** Thrown when the server wants a key; the key panel is then showing. */
  class NeedKey extends Error {}

  const state = {
    key: localStorage.getItem(KEY_STORAGE) || '',
    selected: null, // audio id
    view: null, // the selected file as GET /api/v1/audio/{id} answers
    transcriptFor: null, // audio id whose transcript is shown
    speakersFor: null, // audio id whose transcript was reloaded with its speakers
    audioFor: null, // audio id whose audio is in the player
    audioUrl: null, // the object URL in the player
    fileStream: null, // AbortController of the selected file's events
    globalStream: null, // AbortController of /api/v1/events
    segments: [], // what the segment list shows
    live: { attempt: -1, segments: [] }, // segments of a running transcription
  };

  // ---------------------------------------------------------------- helpers

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (name === 'class') node.className = value;
      else if (name === 'text') node.textContent = value;
      else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? '' : String(value));
    }
    for (const child of children) {
      if (child !== null && child !== undefined) {
        node.append(child instanceof Node ? child : document.createTextNode(String(child)));
      }
    }
    return node;
  }

  function clock(seconds) {
    if (!Number.isFinite(seconds)) return '–';
    const s = Math.max(0, seconds);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = (s % 60).toFixed(1).padStart(4, '0');
    return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${String(m).padStart(2, '0')}:${sec}`;
  }

  function when(iso) {
    if (!iso) return '';
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
  }

  function bytes(n) {
    if (!Number.isFinite(n)) return '';
    const units = ['B', 'KiB', 'MiB', 'GiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
  }

  /**
   * Runs fn now and then at most once per ms while calls keep coming, the
   * last call always honoured: a burst of events costs a few requests, and
   * (unlike a debounce) a steady stream of them cannot postpone the update.
   */
  function coalesce(fn, ms) {
    let timer = null;
    let again = false;
    const tick = () => {
      if (again) {
        again = false;
        fn();
        timer = setTimeout(tick, ms);
      } else {
        timer = null;
      }
    };
    return () => {
      if (timer) { again = true; return; }
      fn();
      timer = setTimeout(tick, ms);
    };
  }

  /** Wraps an async loader so only the newest call's answer is used. */
  function latestOnly(load) {
    let newest = 0;
    return async (...args) => {
      newest += 1;
      const mine = newest;
      const result = await load(...args);
      return { current: mine === newest, result };
    };
  }

  const sleep = (ms, signal) => new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    if (signal) signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });

  function authHeaders(extra = {}) {
    const headers = { ...extra };
    if (state.key) headers.Authorization = `Bearer ${state.key}`;
    return headers;
  }

  /** The API's error message from a response body, or the status line. */
  async function errorText(response) {
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) return body.error.message;
    } catch (_) { /* not JSON */ }
    return `${response.status} ${response.statusText}`;
  }

  /** fetch() with the key; a 401 shows the key panel and throws NeedKey. */
  async function api(path, options = {}) {
    const response = await fetch(path, { ...options, headers: authHeaders(options.headers) });
    if (response.status === 401) {
      askForKey(state.key ? 'The saved key was refused; enter another.' : '');
      throw new NeedKey('API key required');
    }
    return response;
  }

  async function apiJson(path, options = {}) {
    const response = await api(path, options);
    if (!response.ok) throw new Error(await errorText(response));
    return response.json();
  }

  // ----------------------------------------------------------------- API key

  function askForKey(message) {
    stopStreams();
    $('key-panel').hidden = false;
    $('main').hidden = true;
    $('key-message').textContent = message || '';
    $('key-input').focus();
  }

  function setKey(key) {
    state.key = key;
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
    $('forget-key').hidden = !key;
  }

  // -------------------------------------------------------------------- SSE

  /**
   * Reads a server-sent event stream with fetch(), calling onEvent(type,
   * data, id) per event, reconnecting with Last-Event-ID until aborted.
   */
  async function streamEvents(path, signal, onEvent) {
    let lastId = null;
    let retryMs = 1000;
    while (!signal.aborted) {
      try {
        const headers = { Accept: 'text/event-stream' };
        if (lastId !== null) headers['Last-Event-ID'] = lastId;
        const response = await api(path, { headers, signal, cache: 'no-store' });
        if (!response.ok || !response.body) throw new Error(await errorText(response));
        setLive('on');
        retryMs = 1000;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        let type = '';
        let data = [];
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let newline;
          while ((newline = buffer.indexOf('\n')) >= 0) {
            let line = buffer.slice(0, newline);
            buffer = buffer.slice(newline + 1);
            if (line.endsWith('\r')) line = line.slice(0, -1);
            if (line === '') {
              if (data.length) onEvent(type || 'message', data.join('\n'), lastId);
              type = '';
              data = [];
              continue;
            }
            if (line.startsWith(':')) continue; // keep-alive comment
            const colon = line.indexOf(':');
            const field = colon < 0 ? line : line.slice(0, colon);
            let val = colon < 0 ? '' : line.slice(colon + 1);
            if (val.startsWith(' ')) val = val.slice(1);
            if (field === 'event') type = val;
            else if (field === 'data') data.push(val);
            else if (field === 'id' && !val.includes('\0')) lastId = val;
            else if (field === 'retry' && /^\d+$/.test(val)) retryMs = Number(val);
          }
        }
      } catch (e) {
        if (e instanceof NeedKey || signal.aborted) return;
        console.warn(`event stream ${path}:`, e);
      }
      if (signal.aborted) return;
      setLive('reconnecting');
      await sleep(retryMs, signal);
      retryMs = Math.min(retryMs * 2, 15000);
    }
  }

  function setLive(mode) {
    const live = $('live');
    live.dataset.state = mode;
    live.title = mode === 'on' ? 'Live updates on' : 'Reconnecting…';
  }

  function stopStreams() {
    for (const name of ['fileStream', 'globalStream']) {
      if (state[name]) state[name].abort();
      state[name] = null;
    }
  }

  function parse(data) {
    try { return JSON.parse(data); } catch (_) { return null; }
  }

  // ------------------------------------------------------------- file list

  const fetchList = latestOnly((query) => apiJson(`/api/v1/audio?${query}`));

  async function loadList() {
    const status = $('status-filter').value;
    const query = new URLSearchParams({ limit: '50' });
    if (status) query.set('status', status);
    const { current, result: body } = await fetchList(query);
    if (!current) return;
    renderList(body.files || []);
    $('list-message').textContent = body.files && body.files.length ? '' : 'No files yet.';
  }

  const refreshList = coalesce(() => {
    loadList().catch((e) => {
      if (!(e instanceof NeedKey)) $('list-message').textContent = `Could not load files: ${e.message}`;
    });
  }, 300);

  function renderList(files) {
    const rows = files.map((file) => el('tr', {
      'data-testid': 'file-row',
      'data-id': file.id,
      'data-status': file.status,
      class: file.id === state.selected ? 'selected' : '',
      tabindex: 0,
      onclick: () => select(file.id),
      onkeydown: (e) => { if (e.key === 'Enter') select(file.id); },
    },
    el('td', { class: 'name', title: file.original_name, text: file.original_name }),
    el('td', {}, badge(file.status, 'file-status')),
    el('td', { text: clock(file.duration_seconds) }),
    el('td', { class: 'muted', text: when(file.created_at) })));
    $('file-list').replaceChildren(...rows);
  }

  function badge(status, testid) {
    return el('span', { class: `badge s-${String(status).toLowerCase()}`, 'data-testid': testid, 'data-status': status, text: status });
  }

  // ------------------------------------------------------------ file detail

  function select(id) {
    if (state.selected === id) return;
    state.selected = id;
    state.view = null;
    state.transcriptFor = null;
    state.speakersFor = null;
    state.segments = [];
    state.live = { attempt: -1, segments: [] };
    if (location.hash !== `#${id}`) history.replaceState(null, '', `#${id}`);
    for (const row of document.querySelectorAll('[data-testid="file-row"]')) {
      row.classList.toggle('selected', row.dataset.id === id);
    }
    $('placeholder').hidden = true;
    $('detail').hidden = false;
    $('detail').dataset.id = id;
    $('detail-name').textContent = '';
    $('detail-meta').textContent = '';
    $('detail-message').textContent = '';
    $('jobs').replaceChildren();
    $('segments').replaceChildren();
    $('segments').dataset.final = 'false';
    $('events').replaceChildren();
    $('downloads').replaceChildren();
    $('transcript-message').textContent = 'No transcript yet.';
    resetPlayer();
    if (state.fileStream) state.fileStream.abort();
    const controller = new AbortController();
    state.fileStream = controller;
    refreshDetail();
    streamEvents(`/api/v1/audio/${enc(id)}/events`, controller.signal, (type, data) => {
      if (state.selected !== id) return;
      const event = parse(data);
      if (!event) return;
      if (type === 'job') onJobEvent(event);
      else if (type === 'progress') onProgress(event);
      else if (type === 'segment') onLiveSegment(event);
    });
  }

  const fetchView = latestOnly((id) => apiJson(`/api/v1/audio/${enc(id)}`));

  async function refreshDetail() {
    const id = state.selected;
    if (!id) return;
    try {
      const { current, result: view } = await fetchView(id);
      if (!current || state.selected !== id) return;
      state.view = view;
      renderDetail(view);
      const transcription = (view.jobs || []).find((j) => j.job_type === 'TRANSCRIPTION');
      if (transcription && transcription.status === 'COMPLETED' && state.transcriptFor !== id) {
        loadTranscript(id);
      }
      // Speakers join the transcript when PROCESSING merges the diarization.
      const diarized = (view.jobs || []).some((j) => j.job_type === 'DIARIZATION');
      const processing = (view.jobs || []).find((j) => j.job_type === 'PROCESSING');
      if (diarized && processing && processing.status === 'COMPLETED'
        && state.transcriptFor === id && state.speakersFor !== id) {
        state.speakersFor = id;
        loadTranscript(id);
      }
      // A file refused at upload has no stored audio to play.
      if (state.audioFor !== id && view.duration_seconds > 0) loadAudio(id);
    } catch (e) {
      if (!(e instanceof NeedKey) && state.selected === id) {
        $('detail-message').textContent = `Could not load the file: ${e.message}`;
      }
    }
  }

  const refreshDetailSoon = coalesce(refreshDetail, 250);

  function renderDetail(view) {
    $('detail-name').textContent = view.original_name;
    const status = $('detail-status');
    status.textContent = view.status;
    status.dataset.status = view.status;
    status.className = `badge s-${view.status.toLowerCase()}`;
    $('detail-meta').textContent = [
      clock(view.duration_seconds),
      bytes(view.size_bytes),
      [view.container, view.codec].filter(Boolean).join(' / '),
      view.sample_rate ? `${view.sample_rate} Hz` : '',
      `added ${when(view.created_at)}`,
      view.id,
    ].filter(Boolean).join(' · ');
    const jobs = view.jobs || [];
    $('retry').hidden = !jobs.some((j) => RETRYABLE_JOB.has(j.status));
    $('jobs').replaceChildren(...jobs.map(renderJob));
    renderDownloads(view);
    // Keep the list row in step without waiting for the next list load.
    const row = document.querySelector(`[data-testid="file-row"][data-id="${CSS.escape(view.id)}"]`);
    if (row && row.dataset.status !== view.status) {
      row.dataset.status = view.status;
      const cell = row.querySelector('[data-testid="file-status"]');
      if (cell) cell.replaceWith(badge(view.status, 'file-status'));
    }
  }

  function renderJob(job) {
    const percent = job.status === 'COMPLETED' ? 100 : Math.max(0, Math.min(100, job.progress || 0));
    const fill = el('div', {
      class: 'fill',
      'data-testid': 'job-progress',
      'data-progress': percent.toFixed(1),
    });
    fill.style.width = `${percent}%`;
    const cancel = ACTIVE_JOB.has(job.status)
      ? el('button', {
        type: 'button',
        class: 'small',
        'data-testid': 'cancel',
        'data-job-id': job.id,
        disabled: job.cancel_requested,
        onclick: () => cancelJob(job.id),
        text: job.cancel_requested ? 'Cancelling…' : 'Cancel',
      })
      : null;
    return el('li', {
      class: 'job',
      'data-testid': 'job',
      'data-job-id': job.id,
      'data-job-type': job.job_type,
      'data-status': job.status,
    },
    el('div', { class: 'job-head' },
      el('strong', { text: job.job_type }),
      badge(job.status, 'job-status'),
      el('span', { class: 'muted', text: job.attempt ? `attempt ${job.attempt}/${job.max_attempts}` : '' }),
      el('span', { class: 'spacer' }),
      el('span', { class: 'percent', 'data-testid': 'job-percent', text: `${percent.toFixed(0)}%` }),
      cancel),
    el('div', {
      class: 'bar',
      role: 'progressbar',
      'aria-valuemin': 0,
      'aria-valuemax': 100,
      'aria-valuenow': percent.toFixed(0),
    }, fill),
    job.error ? el('p', { class: 'error', 'data-testid': 'job-error', text: job.error.message }) : null);
  }

  function onProgress(event) {
    const item = document.querySelector(`[data-testid="job"][data-job-id="${CSS.escape(event.job_id)}"]`);
    if (!item) { refreshDetailSoon(); return; }
    const percent = Math.max(0, Math.min(100, Number(event.progress) || 0));
    const fill = item.querySelector('[data-testid="job-progress"]');
    fill.style.width = `${percent}%`;
    fill.dataset.progress = percent.toFixed(1);
    item.querySelector('[role="progressbar"]').setAttribute('aria-valuenow', percent.toFixed(0));
    item.querySelector('[data-testid="job-percent"]').textContent = `${percent.toFixed(0)}%`;
  }

  function onJobEvent(event) {
    const jobs = (state.view && state.view.jobs) || [];
    const job = jobs.find((j) => j.id === event.job_id);
    const type = job ? job.job_type : '';
    const transition = event.from_status ? `${event.from_status} → ${event.to_status}` : event.to_status;
    $('events').prepend(el('li', { 'data-testid': 'event', 'data-to-status': event.to_status },
      el('time', { datetime: event.at, text: new Date(event.at).toLocaleTimeString() }),
      ` ${type} ${transition}`,
      event.message ? el('span', { class: 'muted', text: ` — ${event.message}` }) : null));
    refreshDetailSoon();
  }

  async function retry() {
    const id = state.selected;
    const button = $('retry');
    button.disabled = true;
    try {
      const body = await apiJson(`/api/v1/audio/${enc(id)}/retry`, { method: 'POST' });
      $('detail-message').textContent = body.jobs && body.jobs.length
        ? `Retrying ${body.jobs.length} job(s).`
        : 'Nothing to retry.';
      state.transcriptFor = null;
      refreshDetailSoon();
      refreshList();
    } catch (e) {
      if (!(e instanceof NeedKey)) $('detail-message').textContent = `Retry failed: ${e.message}`;
    } finally {
      button.disabled = false;
    }
  }

  async function cancelJob(jobId) {
    try {
      const body = await apiJson(`/api/v1/jobs/${enc(jobId)}/cancel`, { method: 'POST' });
      $('detail-message').textContent = body.jobs && body.jobs.length
        ? `Cancelling ${body.jobs.length} job(s).`
        : 'Nothing to cancel.';
      refreshDetailSoon();
      refreshList();
    } catch (e) {
      if (!(e instanceof NeedKey)) $('detail-message').textContent = `Cancel failed: ${e.message}`;
    }
  }

  // ---------------------------------------------------- transcript & player

  async function loadTranscript(id) {
    state.transcriptFor = id;
    try {
      const response = await api(`/api/v1/audio/${enc(id)}/transcript?format=json`);
      if (response.status === 409) {
        state.transcriptFor = null;
        return;
      }
      if (!response.ok) throw new Error(await errorText(response));
      const transcript = await response.json();
      if (state.selected !== id) return;
      renderTranscript(transcript);
    } catch (e) {
      if (state.selected === id) state.transcriptFor = null;
      if (!(e instanceof NeedKey) && state.selected === id) {
        $('transcript-message').textContent = `Could not load the transcript: ${e.message}`;
      }
    }
  }

  function renderTranscript(transcript) {
    const segments = transcript.segments || [];
    const stats = transcript.stats || {};
    $('transcript-message').textContent = segments.length
      ? [`${segments.length} segments`, stats.words !== undefined ? `${stats.words} words` : '',
        transcript.language ? `language ${transcript.language}` : '', transcript.model || '']
        .filter(Boolean).join(' · ')
      : 'The transcript is empty (no speech found).';
    renderSegments(segments, true);
  }

  /**
   * A segment as the engine produced it, before the transcript is stored:
   * shown provisionally, and a later attempt's segments replace an earlier's.
   */
  function onLiveSegment(event) {
    if (state.transcriptFor === state.selected) return;
    if (event.attempt > state.live.attempt) state.live = { attempt: event.attempt, segments: [] };
    if (event.attempt < state.live.attempt) return;
    state.live.segments[event.segment] = event;
    const segments = state.live.segments.filter(Boolean);
    $('transcript-message').textContent = `Transcribing… ${segments.length} segment(s) so far.`;
    renderSegments(segments, false);
  }

  function renderSegments(segments, final) {
    state.segments = segments;
    $('segments').dataset.final = String(final);
    $('segments').replaceChildren(...segments.map((segment, index) => el('li', {
      class: final ? 'segment' : 'segment live',
      'data-testid': 'segment',
      'data-index': index,
      'data-start': segment.start,
      'data-end': segment.end,
      tabindex: 0,
      title: 'Play from here',
      onclick: () => seek(segment.start),
      onkeydown: (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); seek(segment.start); } },
    },
    el('span', { class: 'ts', 'data-testid': 'segment-time', text: `${clock(segment.start)} – ${clock(segment.end)}` }),
    el('span', { class: 'text', 'data-testid': 'segment-text' },
      ...(segment.speaker ? [el('span', {
        class: 'speaker',
        'data-testid': 'segment-speaker',
        style: `--speaker: ${speakerColour(segment.speaker)}`,
        text: segment.speaker,
      })] : []),
      segment.text.trim()))));
  }

  /** A colour per speaker label, the same for a label wherever it appears. */
  function speakerColour(label) {
    const n = Number((label.match(/(\d+)$/) || [0, 0])[1]);
    // Golden-angle hues stay apart however many speakers there are.
    return `hsl(${Math.round((n * 137.508) % 360)} 65% 45%)`;
  }

  function resetPlayer() {
    const player = $('player');
    player.pause();
    player.removeAttribute('src');
    player.dataset.ready = 'false';
    player.load();
    if (state.audioUrl) URL.revokeObjectURL(state.audioUrl);
    state.audioUrl = null;
    state.audioFor = null;
  }

  /** The stored audio as a Blob: the player cannot send the key itself. */
  async function loadAudio(id) {
    state.audioFor = id;
    try {
      const response = await api(`/api/v1/audio/${enc(id)}/file`);
      if (!response.ok) throw new Error(await errorText(response));
      const blob = await response.blob();
      if (state.selected !== id) return;
      if (state.audioUrl) URL.revokeObjectURL(state.audioUrl);
      state.audioUrl = URL.createObjectURL(blob);
      const player = $('player');
      player.dataset.ready = 'false';
      player.addEventListener('loadedmetadata', () => { player.dataset.ready = 'true'; }, { once: true });
      player.src = state.audioUrl;
    } catch (e) {
      if (state.selected === id) state.audioFor = null;
      if (!(e instanceof NeedKey) && state.selected === id) {
        $('detail-message').textContent = `Could not load the audio: ${e.message}`;
      }
    }
  }

  function seek(seconds) {
    const player = $('player');
    const go = () => {
      player.currentTime = seconds;
      player.play().catch(() => { /* autoplay refused or no output: seeking is what matters */ });
    };
    if (player.readyState >= HTMLMediaElement.HAVE_METADATA) go();
    else player.addEventListener('loadedmetadata', go, { once: true });
  }

  function highlightSegment() {
    const t = $('player').currentTime;
    const index = state.segments.findIndex((s) => t >= s.start && t < s.end);
    for (const item of document.querySelectorAll('[data-testid="segment"]')) {
      const active = Number(item.dataset.index) === index;
      item.classList.toggle('active', active);
      if (active) item.setAttribute('aria-current', 'true');
      else item.removeAttribute('aria-current');
    }
  }

  function renderDownloads(view) {
    const available = view.status === 'COMPLETED' || Object.keys(view.outputs || {}).length > 0;
    if (!available) { $('downloads').replaceChildren(); return; }
    if ($('downloads').childElementCount) return;
    $('downloads').replaceChildren(...FORMATS.map((format) => el('button', {
      type: 'button',
      class: 'small',
      'data-testid': `download-${format}`,
      onclick: () => download(view, format),
      text: format,
    })));
  }

  async function download(view, format) {
    try {
      const response = await api(`/api/v1/audio/${enc(view.id)}/transcript?format=${format}`);
      if (!response.ok) throw new Error(await errorText(response));
      const url = URL.createObjectURL(await response.blob());
      const base = view.original_name.replace(/\.[^.]*$/, '') || 'transcript';
      const link = el('a', { href: url, download: `${base}.${format}` });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (e) {
      if (!(e instanceof NeedKey)) $('detail-message').textContent = `Download failed: ${e.message}`;
    }
  }

  // ----------------------------------------------------------------- upload

  function upload(event) {
    event.preventDefault();
    const file = $('upload-file').files[0];
    if (!file) return;
    const form = new FormData();
    form.append('file', file, file.name);
    const language = $('upload-language').value.trim();
    if (language) form.append('language', language);
    // XMLHttpRequest rather than fetch() for upload progress.
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/api/v1/audio');
    if (state.key) xhr.setRequestHeader('Authorization', `Bearer ${state.key}`);
    const progress = $('upload-progress');
    const message = $('upload-message');
    const submit = $('upload-submit');
    progress.hidden = false;
    progress.value = 0;
    submit.disabled = true;
    message.textContent = `Uploading ${file.name}…`;
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) progress.value = e.loaded / e.total; };
    xhr.onerror = () => {
      submit.disabled = false;
      progress.hidden = true;
      message.textContent = 'Upload failed: the server could not be reached.';
    };
    xhr.onload = () => {
      submit.disabled = false;
      progress.hidden = true;
      const body = parse(xhr.responseText) || {};
      if (xhr.status === 401) {
        askForKey(state.key ? 'The saved key was refused; enter another.' : '');
        return;
      }
      if (xhr.status === 200 || xhr.status === 202) {
        message.textContent = xhr.status === 200
          ? `${file.name}: already known; showing the earlier file.`
          : `${file.name} uploaded.`;
        $('upload-form').reset();
        refreshList();
        if (body.id) select(body.id);
        return;
      }
      const error = (body.error && body.error.message) || `${xhr.status} ${xhr.statusText}`;
      message.textContent = `Upload refused: ${error}`;
      // A file that is not audio is still recorded (FAILED); show it.
      if (body.audio && body.audio.id) {
        refreshList();
        select(body.audio.id);
      }
    };
    xhr.send(form);
  }

  // ------------------------------------------------------------------ start

  async function start() {
    $('key-panel').hidden = true;
    $('main').hidden = false;
    $('forget-key').hidden = !state.key;
    try {
      await loadList();
    } catch (e) {
      if (!(e instanceof NeedKey)) $('list-message').textContent = `Could not load files: ${e.message}`;
      return;
    }
    stopStreams();
    const controller = new AbortController();
    state.globalStream = controller;
    streamEvents('/api/v1/events', controller.signal, (type) => {
      if (type === 'job') refreshList();
    });
    const wanted = location.hash.slice(1);
    if (wanted && wanted !== state.selected) {
      select(wanted);
    } else if (state.selected) {
      const id = state.selected;
      state.selected = null;
      select(id);
    }
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('key-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const key = $('key-input').value.trim();
      if (!key) return;
      setKey(key);
      $('key-input').value = '';
      start();
    });
    $('forget-key').addEventListener('click', () => {
      setKey('');
      location.reload();
    });
    $('upload-form').addEventListener('submit', upload);
    $('refresh').addEventListener('click', refreshList);
    $('status-filter').addEventListener('change', refreshList);
    $('retry').addEventListener('click', retry);
    $('player').addEventListener('timeupdate', highlightSegment);
    $('player').addEventListener('seeked', highlightSegment);
    window.addEventListener('hashchange', () => {
      const id = location.hash.slice(1);
      if (id && id !== state.selected) select(id);
    });
    setInterval(() => {
      if (!document.hidden && !$('main').hidden) refreshList();
    }, LIST_POLL_MS);
    start();
  });
})();
