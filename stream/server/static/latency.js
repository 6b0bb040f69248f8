// Camera-to-screen latency from the browser's own WebRTC statistics.
//
// A frame goes: camera -> encoder -> network -> server (decode, draw, encode) -> network ->
// jitter buffer and decoder -> screen. The browser measures its parts per frame (getStats), the
// ICE candidate pair's round-trip time covers the two network legs, and the server reports its own share
// with every score. Averages are taken over the interval between two getStats() reports.

function videoStat(report, type) {
  for (const stat of report.values()) {
    if (stat.type === type && (stat.kind === "video" || stat.mediaType === "video")) return stat;
  }
  return null;
}

function selectedPair(report) {
  for (const stat of report.values()) {
    if (stat.type === "candidate-pair" && stat.state === "succeeded" && stat.nominated) return stat;
  }
  return null;
}

// Mean of (sum delta) / (count delta) in ms, falling back to the running mean when nothing new.
function perItemMs(current, previous, sumKey, countKey) {
  if (!current || typeof current[sumKey] !== "number" || !current[countKey]) return null;
  const count = current[countKey] - ((previous && previous[countKey]) || 0);
  const sum = current[sumKey] - ((previous && previous[sumKey]) || 0);
  if (count > 0) return (1000 * sum) / count;
  return (1000 * current[sumKey]) / current[countKey];
}

// The browser's parts of the latency, in ms, from two getStats() reports (previous may be null):
// send (encode + packet pacing), network (round trip: one leg each way), receive (jitter buffer +
// decode). Parts the browser does not report are null; a session that only receives has no send.
export function browserLatencyParts(previous, current) {
  const outbound = videoStat(current, "outbound-rtp");
  const inbound = videoStat(current, "inbound-rtp");
  const previousOutbound = previous ? videoStat(previous, "outbound-rtp") : null;
  const previousInbound = previous ? videoStat(previous, "inbound-rtp") : null;
  const encode = perItemMs(outbound, previousOutbound, "totalEncodeTime", "framesEncoded");
  const pacing = perItemMs(outbound, previousOutbound, "totalPacketSendDelay", "packetsSent");
  const jitter = perItemMs(inbound, previousInbound, "jitterBufferDelay", "jitterBufferEmittedCount");
  const decode = perItemMs(inbound, previousInbound, "totalDecodeTime", "framesDecoded");
  const pair = selectedPair(current);
  const roundTrip = pair && typeof pair.currentRoundTripTime === "number" ? 1000 * pair.currentRoundTripTime : null;
  return {
    sendMs: outbound ? (encode || 0) + (pacing || 0) : 0,
    networkMs: roundTrip === null ? null : outbound ? roundTrip : roundTrip / 2,
    receiveMs: jitter === null && decode === null ? null : (jitter || 0) + (decode || 0),
  };
}

// The parts of a new report, where a part the browser did not report this time (a stats interval
// without a decoded frame or a nominated candidate pair, which happens under load) keeps its last
// measured value, so the figure does not fall back to "unknown" between two measurements.
export function keepLastKnown(parts, previous) {
  if (!previous) return parts;
  return {
    sendMs: parts.sendMs,
    networkMs: parts.networkMs === null ? previous.networkMs : parts.networkMs,
    receiveMs: parts.receiveMs === null ? previous.receiveMs : parts.receiveMs,
  };
}

// Camera-to-screen in ms: the browser's parts plus the server's; null until every part is known.
export function cameraToScreenMs(parts, serverMs) {
  if (parts.networkMs === null || parts.receiveMs === null || typeof serverMs !== "number") return null;
  return parts.sendMs + parts.networkMs + serverMs + parts.receiveMs;
}
