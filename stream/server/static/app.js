// deepwatch page: send a camera, screen or tab to the server over WebRTC (or ask it to stream a
// configured source), show the annotated video it sends back, and chart the per-face scores that
// arrive on the data channel.

import { ScoreChart } from "./chart.js";

// aiortc does not trickle ICE: the offer is posted once gathering is complete (or this long passed).
const ICE_GATHERING_TIMEOUT_MS = 5000;
const MAX_ALERTS_SHOWN = 50;

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
};

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
  if (!response.ok) throw new Error(body && body.error ? body.error : `HTTP ${response.status}`);
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
  elements.camera.disabled = running;
  elements.screen.disabled = running;
  elements.watchSource.disabled = running || !elements.sourceSelect.value;
  elements.stop.disabled = !running;
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

function onScores(message) {
  state.scoresMessages += 1;
  state.lastScores = message;
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
      face.p_fake === null ? "…" : face.p_fake.toFixed(2),
      String(face.frames_scored),
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
    const p = event.data && typeof event.data.p_fake === "number" ? ` p(fake) ${event.data.p_fake.toFixed(2)}` : "";
    item.textContent = `${new Date(event.wall_time * 1000).toLocaleTimeString()}: face ${event.track_id} looks manipulated${p}`;
    elements.alerts.prepend(item);
    while (elements.alerts.children.length > MAX_ALERTS_SHOWN) elements.alerts.lastChild.remove();
  }
  setStatus(
    `Connected. ${message.fps.toFixed(1)} fps analysed, server latency ${message.server_latency_ms.toFixed(0)} ms, ` +
      `${message.frames_dropped} frames dropped, ${message.faces.length} face(s).`,
  );
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
  setRunning(true);
  setStatus("Connecting…");
  state.startedAt = performance.now();
  state.localStream = stream;
  chart.clear();
  const pc = new RTCPeerConnection({ iceServers: [] });
  state.pc = pc;
  const channel = pc.createDataChannel("deepwatch");
  state.channel = channel;
  channel.onmessage = onChannelMessage;
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
  if (localStream) localStream.getTracks().forEach((track) => track.stop());
  if (pc) pc.close();
  if (sessionId) {
    try {
      await fetch(`/api/sessions/${sessionId}`, { method: "DELETE", headers: apiHeaders(), keepalive: true });
    } catch {
      // The server closes sessions whose peer is gone on its own; nothing more to do here.
    }
  }
  if (pc) setStatus("Stopped.");
  setRunning(false);
}

async function startCamera() {
  const stream = await navigator.mediaDevices.getUserMedia({
    video: { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 } },
    audio: false,
  });
  await connect(stream);
}

// preferCurrentTab offers this very tab first (what a test or a single-window setup wants).
async function startScreen({ preferCurrentTab = false } = {}) {
  const stream = await navigator.mediaDevices.getDisplayMedia({
    video: { frameRate: { ideal: 15 } },
    audio: false,
    preferCurrentTab,
  });
  await connect(stream);
}

async function startSource(name) {
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

function report(promise) {
  promise.catch((error) => showError(error.message || String(error)));
}

elements.camera.addEventListener("click", () => report(startCamera()));
elements.screen.addEventListener("click", () => report(startScreen()));
elements.watchSource.addEventListener("click", () => report(startSource(elements.sourceSelect.value)));
elements.sourceSelect.addEventListener("change", () => setRunning(Boolean(state.pc)));
elements.stop.addEventListener("click", () => report(stop()));
window.addEventListener("pagehide", () => {
  if (state.sessionId) {
    fetch(`/api/sessions/${state.sessionId}`, { method: "DELETE", headers: apiHeaders(), keepalive: true });
  }
});

window.deepwatch = { state, connect, stop, startCamera, startScreen, startSource, chart };
loadSources();
