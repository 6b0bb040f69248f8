"""Photos: every face of a still image scored on its own, the way calibration scored real photos.

A photograph has no motion to track and no time to sample. Read as the frames of a video (one a
second, which is how ``deepwatch run`` read an image folder before), a single photo never confirmed
a track (``tracker.min_hits`` detections are needed) and a folder of different people's photos
made tracks jump between them, so a photo never got a score. In photo mode each image goes once
through the live chain's own per-frame step (``tracking.FaceStep``: MTCNN, a fresh tracker, the
same aligned crops, as ``deepwatch extract`` cuts a photo), detecting at the larger
``detector.photo_max_side_px``; every face found is encoded in one batch, and each face is scored
as one window of W copies of its features. That is exactly how the model's calibration held out
the real photos of ``faces/`` (``stream.training.identity_recipe``), so the calibrated thresholds
mean the same for a photo as for a window of video, and a photo's face is REAL or FAKE (or UNSURE
inside an uncalibrated band) at once, never waiting for more samples.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from engine.score import Score
from stream.contracts import Event, FaceResult, Frame, FrameResult
from stream.live.app import PipelineComponents
from stream.live.track_record import reference_data
from stream.live.verdict import VerdictRule
from tracking import FaceDetector, FaceTracker, crop_faces
from tracking.face_step import FaceStep

# The event each scored face of a photo emits (``--events``), one per face.
PHOTO_FACE_EVENT = "photo_face"


class PhotoScorer:
    """Scores every face of a photo with the loaded models.

    One instance per run; not thread-safe (its scorer holds one photo's windows at a time). Call
    ``score`` once per photo, in any order: nothing carries over from one photo to the next.
    """

    def __init__(self, components: PipelineComponents) -> None:
        self._components = components
        detector = components.config.detector
        # Photos are detected at a larger scale than video frames (detector.photo_max_side_px):
        # no frame budget, and a face in a group photo is a small part of a large image.
        self._detector = FaceDetector(replace(detector, max_side_px=detector.photo_max_side_px))
        self._scorer = components.still_scorer()
        self._window_size = self._scorer.config.window_size
        self._sample_period_s = 1.0 / self._scorer.sample_rate_hz
        margin = components.config.pipeline.uncertain_margin
        self.verdicts = VerdictRule(components.threshold, margin, components.real_threshold)

    def score(self, image: np.ndarray, source_id: str, index: int = 0) -> FrameResult:
        """Find, crop, encode and score the faces of ``image`` (H x W x 3 uint8 RGB).

        The photo comes back as a one-frame result: one confirmed, ready ``FaceResult`` per face
        found (``track_id`` numbers them from 1 in the detector's order; ``p_fake`` is the window
        of copies' probability, ``reference`` the comparison with the enrolled person, if any),
        one ``photo_face`` event per face, and the stage timings. ``source_id`` names the photo;
        ``index`` is its place in the run. A photo without a face gives a result without faces.
        """
        components = self._components
        config = components.config
        timings_ms: dict[str, float] = {}
        started = time.perf_counter()
        step = FaceStep(self._detector, FaceTracker(config.tracker, source_id=source_id))
        found = step.track(image, 0.0)
        timings_ms["detect"] = found.detect_ms
        timings_ms["track"] = found.track_ms
        tracks = found.tracks
        frame = Frame(image=image, index=index, timestamp_s=0.0, source_id=source_id)
        scores: list[Score] = []
        if tracks:
            stage_started = time.perf_counter()
            crops = crop_faces(image, tracks, config.crop)
            timings_ms["crop"] = _ms_since(stage_started)
            stage_started = time.perf_counter()
            features = np.asarray(components.encoder.encode(crops), dtype=np.float32)
            timings_ms["encode"] = _ms_since(stage_started)
            stage_started = time.perf_counter()
            scores = self._score_stills(features)
            timings_ms["score"] = _ms_since(stage_started)
        faces: list[FaceResult] = []
        events: list[Event] = []
        for track, score in zip(tracks, scores, strict=True):
            p_fake = score.p_fake_raw
            verdict = self.verdicts.verdict(p_fake, ready=True)
            box = np.asarray(track.box_xyxy, dtype=np.float32)
            faces.append(
                FaceResult(
                    track_id=track.track_id,
                    box_xyxy=box,
                    confirmed=True,
                    p_fake=p_fake,
                    ready=True,
                    verdict=verdict,
                    history=(p_fake,),
                    frames_scored=1,
                    reference=score.reference,
                )
            )
            data = {
                "p_fake": round(p_fake, 4),
                "verdict": verdict,
                "box_xyxy": [round(float(v), 1) for v in box],
                **reference_data(score),
            }
            events.append(
                Event(PHOTO_FACE_EVENT, source_id, track.track_id, 0.0, wall_time=time.time(), data=data)
            )
        timings_ms["total"] = _ms_since(started)
        return FrameResult(frame=frame, faces=tuple(faces), events=tuple(events), timings_ms=timings_ms)

    def _score_stills(self, features: np.ndarray) -> list[Score]:
        """Each row of ``features`` as a still face: one window of W copies, one head call per
        round for all faces; the scorer forgets them after."""
        face_ids = range(len(features))
        scores: list[Score] = []
        try:
            for sample in range(self._window_size):
                timestamp_s = sample * self._sample_period_s
                scores = self._scorer.update_many(
                    [(face_id, features[face_id], timestamp_s) for face_id in face_ids]
                )
        finally:
            self._scorer.reset()
        return scores


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
