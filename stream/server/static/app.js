// deepwatch page: send a camera, screen or tab to the server over WebRTC (or ask it to stream a
// configured source), show the annotated video it sends back, and chart the per-face scores that
// arrive on the data channel.

import { ScoreChart } from "./chart.js";
import { browserLatencyParts, cameraToScreenMs, keepLastKnown } from "./latency.js";

// aiortc does not trickle ICE: the offer is posted once gathering is complete (or this long passed).
const ICE_GATHERING_TIMEOUT_MS = 5000;
const MAX_ALERTS_SHOWN = 50;
const STATS_INTERVAL_MS = 1000;
// Weight of the newest value in the displayed analysis lag, which swings between tracked frames
// (a few ms) and detected ones (a detection's time).
const LAG_SMOOTHING = 0.1;
// An enrolment photo is shrunk in the browser to this side and JPEG-compressed under this size,
// so it fits the server's request body limit; a face stays well above MTCNN's smallest size.
const ENROL_MAX_SIDE_PX = 512;
const ENROL_MAX_BYTES = 60 * 1024;
// A clip enrols as `deepwatch run --reference CLIP` does: its first frames, 4 a second, taken here
// from a video file or from the shared video and sent as JPEG stills (the server never decodes
// video from the page). Also the most photos one upload may hold.
const ENROL_CLIP_FRAMES = 8;
const ENROL_CLIP_RATE_HZ = 4;

const token = new URLSearchParams(location.search).get("token");
// Keep the token out of the address bar, history and screenshots once it has been read.
if (token) history.replaceState(null, "", location.pathname);
const elements = {
  camera: document.getElementById("share-camera"),
  screen: document.getElementById("share-screen"),
  sourceSelect: document.getElementById("source-select"),
  watchSource: document.getElementById("watch-source"),
  stop: document.getElementById("stop"),
  status: document.getElementById("status"),
  error: document.getElementById("error"),
  video: document.getElementById("remote-video"),
  faces: document.querySelector("#faces tbody"),
  alerts: document.getElementById("alerts"),
  insecure: document.getElementById("insecure"),
  stats: document.getElementById("stats"),
  statFps: document.getElementById("stat-fps"),
  statLatency: document.getElementById("stat-latency"),
  statAnalysis: document.getElementById("stat-analysis"),
  statDropped: document.getElementById("stat-dropped"),
  statFaces: document.getElementById("stat-faces"),
  trustNote: document.getElementById("trust-note"),
  verdictRule: document.getElementById("verdict-rule"),
  enrolment: document.getElementById("enrolment"),
  enrolled: document.getElementById("enrolled"),
  enrolPhoto: document.getElementById("enrol-photo"),
  enrolLive: document.getElementById("enrol-live"),
  forgetReference: document.getElementById("forget-reference"),
};
const chart = new ScoreChart(document.getElementById("score-chart"));

// What tests and benchmarks read (window.deepwatch); the page itself uses it too.
const state = {
  pc: null,
  channel: null,
  sessionId: null,
  localStream: null,
  connectionState: "new",
  scoresMessages: 0,
  facesSeen: [],
  readyScores: 0,
  lastScores: null,
  alerts: [],
  errors: [],
  startedAt: 0,
  // GET/PUT/DELETE /api/reference's last answer: {available, reference: {name, photos} | null}.
  reference: null,
  // The server accepted this page's token (GET /api/model answered); nothing is captured before.
  authorized: false,
  // Camera and screen capture exist only in a secure context (HTTPS, or localhost).
  insecure: !window.isSecureContext,
  model: null,
  sending: false,
  analysisLagMs: null,
  serverVideoMs: null,
  latency: null,
  previousStats: null,
  statsTimer: null,
};

function insecureContextMessage() {
  return (
    `Camera and screen sharing need a secure page, and ${location.origin} is not one: browsers ` +
    "allow them only over HTTPS or on this machine's own address. Either start the server with a " +
    "certificate (deepwatch serve --tls-cert FILE --tls-key FILE; --make-cert DIR writes a " +
    "self-signed one for trials) and open the https:// address, or keep deepwatch serve on " +
    "127.0.0.1 behind a TLS reverse proxy (nginx or Caddy, see the README), or open the page " +
    "on the server's own machine as http://127.0.0.1. Watching a server-side source works here."
  );
}

function apiHeaders() {
  const headers = { "Content-Type": "application/json" };
  if (token) headers["X-Deepwatch-Token"] = token;
  return headers;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: apiHeaders() });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = { error: `HTTP ${response.status}` };
  }
  if (!response.ok) {
    const error = new Error(body && body.error ? body.error : `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

function showError(message) {
  state.errors.push(String(message));
  elements.error.textContent = String(message);
  elements.error.hidden = false;
}

function setStatus(text) {
  elements.status.textContent = text;
}

function setRunning(running) {
  const canCapture = state.authorized && !state.insecure;
  elements.camera.disabled = running || !canCapture;
  elements.screen.disabled = running || !canCapture;
  elements.watchSource.disabled = running || !state.authorized || !elements.sourceSelect.value;
  elements.stop.disabled = !running;
  elements.enrolLive.disabled = !running || !state.localStream;
}

// Capture starts only once the server took the token, and only where the browser allows it.
function requireCapture(what) {
  if (!state.authorized) {
    throw new Error(`the server has not accepted this page's access token, so the ${what} stays off`);
  }
  if (state.insecure || !navigator.mediaDevices) throw new Error(insecureContextMessage());
}

function applyModel(model) {
  state.model = model;
  chart.setVerdictRule(model.threshold, model.unsure_low, model.unsure_high);
  elements.trustNote.textContent = `Model: ${model.trust_note}.`;
  elements.trustNote.className = `trust-note trust-${model.trust_level}`;
  elements.verdictRule.textContent = model.verdict_rule;
}

async function authorize() {
  try {
    applyModel(await api("/api/model"));
    state.authorized = true;
    setStatus("Not connected.");
  } catch (error) {
    state.authorized = false;
    if (error.status === 401 || error.status === 429) showError(error.message);
    else showError(`cannot reach the deepwatch server: ${error.message}`);
    setStatus("No access yet: see the message below.");
  }
  setRunning(false);
  if (state.authorized) await Promise.all([loadSources(), loadReference()]);
}

function formatMs(value) {
  return typeof value === "number" && Number.isFinite(value) ? `${value.toFixed(0)} ms` : "…";
}

function renderStats(message) {
  elements.stats.hidden = false;
  elements.statFps.textContent = `${message.fps.toFixed(1)} fps analysed`;
  const what = state.sending ? "camera-to-screen" : "source-to-screen";
  const total = state.latency ? state.latency.totalMs : null;
  elements.statLatency.textContent = `${what} ≈ ${formatMs(total)} (server ${formatMs(state.serverVideoMs)} of it)`;
  elements.statAnalysis.textContent = `scores ${formatMs(state.analysisLagMs)} behind the video`;
  elements.statDropped.textContent = `${message.frames_dropped} frames not analysed (why?)`;
  elements.statFaces.textContent = `${message.faces.length} face(s)`;
}

async function sampleLatency() {
  const pc = state.pc;
  if (!pc) return;
  const report = await pc.getStats();
  if (pc !== state.pc) return;
  const parts = keepLastKnown(browserLatencyParts(state.previousStats, report), state.latency);
  state.previousStats = report;
  state.latency = { ...parts, serverMs: state.serverVideoMs, totalMs: cameraToScreenMs(parts, state.serverVideoMs) };
}

function waitForIceGathering(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ICE_GATHERING_TIMEOUT_MS);
    function done() {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    }
    function check() {
      if (pc.iceGatheringState === "complete") done();
    }
    pc.addEventListener("icegatheringstatechange", check);
  });
}

// The comparison with the enrolled person (deepwatch serve --reference), in words; "–" when
// nobody is enrolled. Verdicts as engine/reference.py names them.
const REFERENCE_WORDS = {
  match: "matches",
  face_only: "face matches, head does not",
  head_only: "head matches, face does not",
  other: "someone else",
  unsure: "…",
};

function referenceText(reference) {
  if (!reference) return "–";
  return REFERENCE_WORDS[reference.verdict] || reference.verdict;
}

// What an alert event says (stream/live/alerts.py): a sustained score, or a face that stopped
// matching the enrolled person.
function alertText(data) {
  if (data && data.reason === "reference" && data.reference) {
    return `does not match the enrolled person: ${referenceText(data.reference)}`;
  }
  const p = data && typeof data.p_fake === "number" ? ` p(fake) ${data.p_fake.toFixed(2)}` : "";
  return `looks manipulated${p}`;
}

function onScores(message) {
  state.scoresMessages += 1;
  state.lastScores = message;
  if (typeof message.server_video_latency_ms === "number") state.serverVideoMs = message.server_video_latency_ms;
  state.analysisLagMs =
    state.analysisLagMs === null
      ? message.server_latency_ms
      : (1 - LAG_SMOOTHING) * state.analysisLagMs + LAG_SMOOTHING * message.server_latency_ms;
  const t = (performance.now() - state.startedAt) / 1000;
  elements.faces.replaceChildren();
  for (const face of message.faces) {
    if (!state.facesSeen.includes(face.track_id)) state.facesSeen.push(face.track_id);
    if (face.ready && face.p_fake !== null) state.readyScores += 1;
    chart.add(face.track_id, t, face.ready ? face.p_fake : null);
    const row = document.createElement("tr");
    const cells = [
      `face ${face.track_id}`,
      face.verdict,
      face.ready && face.p_fake !== null ? face.p_fake.toFixed(2) : "…",
      String(face.frames_scored),
      referenceText(face.reference),
    ];
    cells.forEach((text, i) => {
      const cell = document.createElement("td");
      cell.textContent = text;
      if (i === 1) cell.className = `verdict-${face.verdict}`;
      row.appendChild(cell);
    });
    row.firstChild.style.color = chart.colour(face.track_id);
    elements.faces.appendChild(row);
  }
  for (const event of message.events) {
    if (event.kind !== "alert") continue;
    state.alerts.push(event);
    const item = document.createElement("li");
    item.textContent = `${new Date(event.wall_time * 1000).toLocaleTimeString()}: face ${event.track_id} ${alertText(event.data)}`;
    elements.alerts.prepend(item);
    while (elements.alerts.children.length > MAX_ALERTS_SHOWN) elements.alerts.lastChild.remove();
  }
  setStatus("Connected.");
  renderStats(message);
}

function onChannelMessage(event) {
  let message;
  try {
    message = JSON.parse(event.data);
  } catch {
    return;
  }
  if (message.type === "scores") onScores(message);
  else if (message.type === "error") showError(`server: ${message.error}`);
}

// Connects with `stream` (a MediaStream whose first video track is analysed) or, with stream null,
// asks the server to stream the configured source named `source`.
async function connect(stream, source = null) {
  await stop();
  elements.error.hidden = true;
  state.localStream = stream;
  setRunning(true);
  setStatus("Connecting…");
  state.startedAt = performance.now();
  state.sending = Boolean(stream);
  state.analysisLagMs = state.serverVideoMs = state.latency = state.previousStats = null;
  chart.clear();
  const pc = new RTCPeerConnection({ iceServers: [] });
  state.pc = pc;
  const channel = pc.createDataChannel("deepwatch");
  state.channel = channel;
  // A message already queued when Stop closed this session must not bring its rows back.
  channel.onmessage = (event) => {
    if (state.channel === channel) onChannelMessage(event);
  };
  pc.addEventListener("connectionstatechange", () => {
    state.connectionState = pc.connectionState;
    if (pc.connectionState === "failed") {
      showError("connection failed");
      stop();
    }
  });
  pc.addEventListener("track", (event) => {
    elements.video.srcObject = event.streams[0] || new MediaStream([event.track]);
  });
  if (stream) {
    const track = stream.getVideoTracks()[0];
    // The user ending the share from the browser's own UI ends the session too.
    track.addEventListener("ended", () => stop());
    pc.addTransceiver(track, { direction: "sendrecv", streams: [stream] });
  } else {
    pc.addTransceiver("video", { direction: "recvonly" });
  }
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await waitForIceGathering(pc);
    const answer = await api("/api/offer", {
      method: "POST",
      body: JSON.stringify({ type: "offer", sdp: pc.localDescription.sdp, source }),
    });
    state.sessionId = answer.session_id;
    await pc.setRemoteDescription({ type: answer.type, sdp: answer.sdp });
    state.statsTimer = setInterval(() => sampleLatency().catch(() => {}), STATS_INTERVAL_MS);
  } catch (error) {
    showError(error.message || String(error));
    await stop();
    throw error;
  }
}

async function stop() {
  const { pc, sessionId, localStream } = state;
  state.pc = null;
  state.channel = null;
  state.sessionId = null;
  state.localStream = null;
  state.lastScores = null;
  clearInterval(state.statsTimer);
  state.statsTimer = null;
  // Ask the server to close the session before the connection goes, so it is closed by request
  // rather than found gone (the server closes sessions whose peer vanished on its own too).
  const closing = sessionId
    ? fetch(`/api/sessions/${sessionId}`, { method: "DELETE", headers: apiHeaders(), keepalive: true }).catch(() => {})
    : null;
  if (localStream) localStream.getTracks().forEach((track) => track.stop());
  if (pc) pc.close();
  // Nothing of the finished session stays up as if it were current.
  elements.faces.replaceChildren();
  elements.video.srcObject = null;
  elements.stats.hidden = true;
  chart.stopLive();
  await closing;
  if (pc) setStatus("Stopped.");
  setRunning(false);
}

async function startCamera() {
  requireCapture("camera");
  const stream = await navigator.mediaDevices.getUserMedia({
    video: { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 } },
    audio: false,
  });
  await connect(stream);
}

// preferCurrentTab offers this very tab first (what a test or a single-window setup wants).
async function startScreen({ preferCurrentTab = false } = {}) {
  requireCapture("screen sharing");
  const stream = await navigator.mediaDevices.getDisplayMedia({
    video: { frameRate: { ideal: 15 } },
    audio: false,
    preferCurrentTab,
  });
  await connect(stream);
}

async function startSource(name) {
  if (!state.authorized) throw new Error("the server has not accepted this page's access token");
  await connect(null, name);
}

async function loadSources() {
  try {
    const { sources } = await api("/api/sources");
    for (const name of sources) {
      const option = document.createElement("option");
      option.value = option.textContent = name;
      elements.sourceSelect.appendChild(option);
    }
  } catch (error) {
    showError(`cannot list sources: ${error.message}`);
  }
}

function showReference(answer) {
  state.reference = answer;
  elements.enrolment.hidden = !answer.available;
  elements.enrolled.textContent = answer.reference
    ? `Enrolled: ${answer.reference.name}. Every face is compared with them.`
    : "Nobody enrolled.";
  elements.forgetReference.disabled = !answer.reference;
}

async function loadReference() {
  try {
    showReference(await api("/api/reference"));
  } catch (error) {
    showError(`cannot read the enrolled person: ${error.message}`);
  }
}

// A JPEG of `source` (an image or a playing <video>) at most ENROL_MAX_SIDE_PX a side and
// ENROL_MAX_BYTES long.
async function shrinkImage(source, width, height) {
  const scale = Math.min(1, ENROL_MAX_SIDE_PX / Math.max(width, height));
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.round(width * scale));
  canvas.height = Math.max(1, Math.round(height * scale));
  canvas.getContext("2d").drawImage(source, 0, 0, canvas.width, canvas.height);
  for (const quality of [0.9, 0.8, 0.7, 0.55, 0.4]) {
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", quality));
    if (blob && blob.size <= ENROL_MAX_BYTES) return blob;
  }
  throw new Error("the photo stays too large after shrinking it; crop it around the face");
}

async function shrinkPhoto(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    throw new Error(`${file.name} is not an image this browser can read`);
  }
  try {
    return await shrinkImage(bitmap, bitmap.width, bitmap.height);
  } finally {
    bitmap.close();
  }
}

// Resolves on `event` of `target`, rejects on its "error" or after `timeoutMs`.
function nextEvent(target, event, what, timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => finish(new Error(`${what}: no answer in ${timeoutMs / 1000} s`)), timeoutMs);
    const onEvent = () => finish(null);
    const onError = () => finish(new Error(what));
    function finish(error) {
      clearTimeout(timer);
      target.removeEventListener(event, onEvent);
      target.removeEventListener("error", onError);
      if (error) reject(error);
      else resolve();
    }
    target.addEventListener(event, onEvent);
    target.addEventListener("error", onError);
  });
}

// Resolves when `video` presents its next frame, or after `timeoutMs` where that never comes.
// "seeked" can fire before the frame that drawImage reads is the new one: on a loaded machine
// Chromium drew the frame of the previous seek. Register before seeking, await after "seeked".
function presentedFrame(video, timeoutMs = 2000) {
  if (typeof video.requestVideoFrameCallback !== "function") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    video.requestVideoFrameCallback(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

// The clip's first ENROL_CLIP_FRAMES frames, ENROL_CLIP_RATE_HZ a second, as JPEG blobs.
async function clipFrames(file) {
  const video = document.createElement("video");
  video.muted = true;
  video.preload = "auto";
  const url = URL.createObjectURL(file);
  try {
    video.src = url;
    await nextEvent(video, "loadeddata", `${file.name} is not a video this browser can play`);
    const frames = [];
    for (let index = 0; index < ENROL_CLIP_FRAMES; index += 1) {
      const time = index / ENROL_CLIP_RATE_HZ;
      // A recording without a stated duration (MediaRecorder's WebM) says Infinity.
      if (Number.isFinite(video.duration) && time > video.duration) break;
      if (Math.abs(video.currentTime - time) > 1e-3) {
        const presented = presentedFrame(video);
        const seeked = nextEvent(video, "seeked", `cannot seek ${file.name} to ${time} s`);
        video.currentTime = time;
        await seeked;
        await presented;
      }
      frames.push(await shrinkImage(video, video.videoWidth, video.videoHeight));
    }
    return frames;
  } finally {
    video.removeAttribute("src");
    video.load();
    URL.revokeObjectURL(url);
  }
}

// ENROL_CLIP_FRAMES frames of the video this page shares, ENROL_CLIP_RATE_HZ a second, as JPEG blobs.
async function liveFrames(stream) {
  const video = document.createElement("video");
  video.muted = true;
  video.srcObject = stream;
  try {
    await video.play();
    if (video.readyState < HTMLMediaElement.HAVE_CURRENT_DATA) {
      await nextEvent(video, "loadeddata", "the shared video shows no frame");
    }
    const frames = [];
    for (let index = 0; index < ENROL_CLIP_FRAMES; index += 1) {
      if (index) await new Promise((resolve) => setTimeout(resolve, 1000 / ENROL_CLIP_RATE_HZ));
      frames.push(await shrinkImage(video, video.videoWidth, video.videoHeight));
    }
    return frames;
  } finally {
    video.pause();
    video.srcObject = null;
  }
}

// PUT /api/reference: one JPEG, or multipart `photo` or `frame` parts; shows the answer.
async function putReference(name, body) {
  const headers = {};
  if (token) headers["X-Deepwatch-Token"] = token;
  if (body instanceof Blob) headers["Content-Type"] = "image/jpeg";
  const response = await fetch(`/api/reference?name=${encodeURIComponent(name)}`, {
    method: "PUT",
    headers,
    body,
  });
  const answer = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(`cannot enrol ${name}: ${answer.error}`);
  showReference(answer);
}

// multipart/form-data of `blobs` as parts named `field` (the server names a clip's frames itself).
function multipartBody(field, blobs, names = blobs.map((_, index) => `frame${index + 1}.jpg`)) {
  const form = new FormData();
  blobs.forEach((blob, index) => form.append(field, blob, names[index]));
  return form;
}

// Photos (each its own view of the person) or one video file (enrolled from its first frames).
async function enrolFiles(files) {
  if (!files.length) return;
  const videos = files.filter((file) => file.type.startsWith("video/"));
  const label = files.length === 1 ? files[0].name : `${files.length} photos`;
  elements.enrolled.textContent = `Enrolling ${label}…`;
  try {
    if (videos.length && files.length > 1) {
      throw new Error(`enrol one clip, or up to ${ENROL_CLIP_FRAMES} photos, at a time`);
    }
    if (files.length > ENROL_CLIP_FRAMES) {
      throw new Error(`enrol at most ${ENROL_CLIP_FRAMES} photos at a time`);
    }
    if (videos.length) {
      await putReference(files[0].name, multipartBody("frame", await clipFrames(files[0])));
    } else if (files.length === 1) {
      await putReference(files[0].name, await shrinkPhoto(files[0]));
    } else {
      const photos = await Promise.all(files.map((file) => shrinkPhoto(file)));
      await putReference(label, multipartBody("photo", photos, files.map((file) => file.name)));
    }
  } finally {
    elements.enrolPhoto.value = "";
    if (state.reference) showReference(state.reference);
  }
}

// The person on the shared camera or screen now: 2 s of it, as a clip.
async function enrolLive() {
  const stream = state.localStream;
  if (!stream) throw new Error("share a camera or screen first, then enrol the person on it");
  elements.enrolLive.disabled = true;
  elements.enrolled.textContent = "Taking 2 s of the shared video…";
  const name = `shared video at ${new Date().toLocaleTimeString()}`;
  try {
    await putReference(name, multipartBody("frame", await liveFrames(stream)));
  } finally {
    setRunning(Boolean(state.pc));
    if (state.reference) showReference(state.reference);
  }
}

async function forgetReference() {
  showReference(await api("/api/reference", { method: "DELETE" }));
}

function report(promise) {
  promise.catch((error) => showError(error.message || String(error)));
}

elements.camera.addEventListener("click", () => report(startCamera()));
elements.screen.addEventListener("click", () => report(startScreen()));
elements.watchSource.addEventListener("click", () => report(startSource(elements.sourceSelect.value)));
elements.sourceSelect.addEventListener("change", () => setRunning(Boolean(state.pc)));
elements.stop.addEventListener("click", () => report(stop()));
elements.enrolPhoto.addEventListener("change", () => report(enrolFiles([...elements.enrolPhoto.files])));
elements.enrolLive.addEventListener("click", () => report(enrolLive()));
elements.forgetReference.addEventListener("click", () => report(forgetReference()));
window.addEventListener("pagehide", () => {
  if (state.sessionId) {
    fetch(`/api/sessions/${state.sessionId}`, { method: "DELETE", headers: apiHeaders(), keepalive: true });
  }
});

if (state.insecure) {
  elements.insecure.textContent = insecureContextMessage();
  elements.insecure.hidden = false;
}
const ready = authorize();
window.deepwatch = { state, connect, stop, startCamera, startScreen, startSource, chart, ready };
