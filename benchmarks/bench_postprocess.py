"""Cost of `ffcore.postprocess.postprocess` (softmax, score filter, decode, NMS) next to the forward pass.

Input: a real photo (crowd.jpg, many faces) resized to 640x640 through the trained
RetinaFace-MobileNet-0.25, so the number of candidates above 0.02 is realistic. Other
registered models (untrained weights: their outputs are not realistic) can be timed for the
forward pass only with --models. Medians of --repeats runs after warm-up, one thread.

    .venv/bin/python benchmarks/bench_postprocess.py [--repeats 20] [--threads 1]
"""

from __future__ import annotations

import argparse

import torch

from ffcore.eval.detect import load_detector
from ffcore.paths import shared_dir
from ffcore.postprocess import postprocess
from ffcore.preprocess import image_to_tensor, read_image
from ffcore.bench import median_seconds


def main() -> None:
    import cv2

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image", default=str(shared_dir() / "images" / "crowd.jpg"))
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="*", default=[], help="extra models: forward time only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = load_detector("retinaface_mnet025")
    image = cv2.resize(read_image(args.image), (args.size, args.size), interpolation=cv2.INTER_LINEAR)
    x = image_to_tensor(image)
    with torch.inference_mode():
        loc, conf, landm = model(x)[:3]
        forward = median_seconds(lambda: model(x), args.repeats, warmup=3)
        post = median_seconds(lambda: postprocess(loc, conf, landm, (args.size, args.size)), args.repeats, warmup=3)
        detections = postprocess(loc, conf, landm, (args.size, args.size))[0]
    candidates = int((torch.softmax(conf[0], -1)[:, 1] > 0.02).sum())
    print(f"input {args.size}x{args.size} from {args.image}, {args.threads} thread(s), median of {args.repeats}")
    print(f"retinaface_mnet025 forward:   {1000 * forward:8.2f} ms")
    print(f"postprocess:                  {1000 * post:8.2f} ms  ({candidates} candidates > 0.02, "
          f"{len(detections)} kept, {int((detections.scores >= 0.5).sum())} >= 0.5)")
    print(f"postprocess / forward:        {100 * post / forward:8.1f} %")
    print(f"postprocess share of total:   {100 * post / (forward + post):8.1f} %")

    for name in args.models:
        from ffcore.models import create_model

        other = create_model(name).eval()
        with torch.inference_mode():
            seconds = median_seconds(lambda: other(x), args.repeats, warmup=3)
        print(f"{name} forward:  {1000 * seconds:8.2f} ms  (postprocess / forward "
              f"{100 * post / seconds:.1f} % at the candidate count above)")


if __name__ == "__main__":
    main()
