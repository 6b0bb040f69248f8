"""MTCNN face detector: frames in, ``Detection`` lists out."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from tracking.config import DetectorConfig
from tracking.detection import Detection
from tracking.validation import check_frame

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

# P-Net looks at 12 x 12 windows: a face smaller than this at detection scale can only be found
# by upsampling the frame, which would undo the point of downscaling it first.
PNET_WINDOW_PX = 12.0


class FaceDetector:
    """Finds faces with facenet-pytorch's MTCNN on the CPU.

    Boxes and landmarks are in pixels of the frame passed in, whatever ``max_side_px`` the
    detection ran at. Not thread-safe: call from one thread (the pipeline thread). Constructing
    loads the MTCNN weights that ship inside facenet-pytorch; nothing is downloaded.

    Args:
        config: detector settings; defaults to ``DetectorConfig()``.
        **overrides: fields of ``DetectorConfig`` to change, e.g. ``min_face_size_px=20``.
    """

    def __init__(self, config: DetectorConfig | None = None, **overrides: Any) -> None:
        base = config if config is not None else DetectorConfig()
        self.config = replace(base, **overrides) if overrides else base
        # Heavy imports live here so that importing ``tracking`` stays cheap.
        import torch
        from facenet_pytorch import MTCNN

        self._torch = torch
        self._device = torch.device("cpu")
        self._mtcnn = MTCNN(
            keep_all=True,
            device=self._device,
            min_face_size=self.config.min_face_size_px,
            thresholds=list(self.config.thresholds),
            factor=self.config.pyramid_factor,
        ).eval()

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Detect the faces in one H x W x 3 uint8 RGB frame.

        Returns:
            Detections sorted by decreasing confidence; an empty list when there is no face.

        Raises:
            ValueError: ``image`` is not H x W x 3 uint8.
        """
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Detect faces in several frames; frames of the same size go through MTCNN as one batch.

        Returns:
            One list of detections per input frame, in input order (see ``detect``).

        Raises:
            ValueError: a frame is not H x W x 3 uint8.
        """
        for index, image in enumerate(images):
            check_frame(image, f"images[{index}]")
        by_shape: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for index, image in enumerate(images):
            by_shape[image.shape].append(index)
        results: list[list[Detection]] = [[] for _ in images]
        for indices in by_shape.values():
            batch = np.stack([images[i] for i in indices])
            for index, detections in zip(indices, self._detect_same_size(batch), strict=True):
                results[index] = detections
        return results

    def _detect_same_size(self, batch: np.ndarray) -> list[list[Detection]]:
        from facenet_pytorch.models.utils.detect_face import detect_face

        height, width = batch.shape[1:3]
        scale = 1.0
        if self.config.max_side_px is not None and max(height, width) > self.config.max_side_px:
            scale = self.config.max_side_px / max(height, width)
        small = batch
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = np.stack([cv2.resize(image, size, interpolation=cv2.INTER_AREA) for image in batch])
        small_height, small_width = small.shape[1:3]
        scale_x, scale_y = small_width / width, small_height / height
        min_face_px = max(self.config.min_face_size_px * min(scale_x, scale_y), PNET_WINDOW_PX)
        if min(small_height, small_width) < min_face_px:
            # No pyramid level fits; facenet-pytorch would fail on an empty pyramid.
            return [[] for _ in range(len(batch))]

        tensor: torch.Tensor = self._torch.from_numpy(np.ascontiguousarray(small))
        previous_threads = self._torch.get_num_threads()
        if self.config.num_threads is not None:
            self._torch.set_num_threads(self.config.num_threads)
        try:
            with self._torch.inference_mode():
                batch_boxes, batch_points = detect_face(
                    tensor,
                    min_face_px,
                    self._mtcnn.pnet,
                    self._mtcnn.rnet,
                    self._mtcnn.onet,
                    list(self.config.thresholds),
                    self.config.pyramid_factor,
                    self._device,
                )
        finally:
            self._torch.set_num_threads(previous_threads)
        to_frame = np.array([scale_x, scale_y], dtype=np.float32)
        results = []
        for boxes_scores, points in zip(batch_boxes, batch_points, strict=True):
            boxes_scores = np.asarray(boxes_scores, dtype=np.float32).reshape(-1, 5)
            points = np.asarray(points, dtype=np.float32).reshape(-1, 5, 2)
            order = np.argsort(-boxes_scores[:, 4], kind="stable")
            results.append(
                [
                    Detection(
                        box_xyxy=(boxes_scores[i, :4].reshape(2, 2) / to_frame).reshape(4),
                        confidence=float(boxes_scores[i, 4]),
                        landmarks_5x2=points[i] / to_frame,
                    )
                    for i in order
                ]
            )
        return results
