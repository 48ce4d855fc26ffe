"""Python side of the live camera: updates/s of `fer_nb.camera.handle_frame` (decode JPEG + find faces + classify) per frame.

    python bench/camera_speed.py [--threads 2] [--runs 60] [--checkpoint PATH] [--runtime auto]

Frames are the astronaut on a 4:3 frame, JPEG quality 70 as the widget's JS encodes them, at 640×480 (a full webcam
frame) and at 320×240 (what the widget sends by default). Prints the median ms and updates/s of each; the issue's
target is ≥ 10 updates/s on 2 threads."""
import statistics, time


from fer_nb.camera import handle_frame
from fer_nb.predict import FaceTracker, Predictor
from fer_nb.synthetic import jpeg_bytes, sample_frame
from common import bench_args

def main():
    a = bench_args(__doc__, runs=60)
    p = Predictor.load(a.checkpoint, runtime=a.runtime)
    print(f"{p} · {a.threads} threads · {a.runs} frames each")
    for width in (640, 320):
        jpeg, tracker = jpeg_bytes(sample_frame(width), 70), FaceTracker()
        for _ in range(5): handle_frame(p, jpeg, tracker)     # warm up
        ms = []
        for _ in range(a.runs):
            t = time.perf_counter(); r = handle_frame(p, jpeg, tracker); ms.append((time.perf_counter() - t)*1000)
        assert 'faces' in r and len(r['faces']) == 1, r
        med = statistics.median(ms)
        print(f"{width}×{width*3//4} JPEG ({len(jpeg)//1024} kB): median {med:.1f} ms, p90 {sorted(ms)[int(.9*len(ms))]:.1f} ms "
              f"→ {1000/med:.0f} updates/s (mean {len(ms)*1000/sum(ms):.0f}/s) · {r['faces'][0]['label']}")

if __name__ == '__main__': main()
