"""fp32 against static int8 ONNX (ONNX Runtime's quantize_static, QDQ, per-channel weights): FERPlus valid accuracy and speed.

    python bench/int8.py CHECKPOINT [--calibrate 512] [--threads 2]

Calibrates on the first `calibrate` FERPlus valid faces ($FERPLUS_DIR), then scores all of valid (train prior, majority
label) with both exports, and times batch 1 (spinning threads) and batch 64. The rule of issue #28: int8 ships only if
valid holds within 0.3 point."""
import argparse, tempfile, time
from pathlib import Path
import numpy as np, onnxruntime as ort, torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quant_pre_process, quantize_static
from fer_nb.data import load_ferplus
from fer_nb.model import load_checkpoint
from fer_nb.onnx_model import export_onnx

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument('checkpoint'); p.add_argument('--calibrate', type=int, default=512); p.add_argument('--threads', type=int, default=2)
a = p.parse_args()
model, saved = load_checkpoint(a.checkpoint, prior='train')
valid = load_ferplus(None, 'valid', 'majority')
x = torch.from_numpy(valid.images[:, None].astype(np.float32)/255)
if model.in_size != x.shape[-1]: x = torch.nn.functional.interpolate(x, size=(model.in_size,)*2, mode='bilinear', align_corners=False)
x = x.numpy()
out = Path(tempfile.mkdtemp())
export_onnx((model, saved), out/'fp32.onnx')

class Faces(CalibrationDataReader):
    def __init__(self): self.batches = iter([{'faces': x[i:i+32]} for i in range(0, a.calibrate, 32)])
    def get_next(self): return next(self.batches, None)
quant_pre_process(str(out/'fp32.onnx'), str(out/'pre.onnx'))
quantize_static(str(out/'pre.onnx'), str(out/'int8.onnx'), Faces(), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
print(f'{a.checkpoint}: {model.in_size} px, {a.threads} threads, calibrated on {a.calibrate} FERPlus valid faces')
for name in ('fp32', 'int8'):
    so = ort.SessionOptions(); so.intra_op_num_threads = a.threads; so.inter_op_num_threads = 1
    s = ort.InferenceSession(str(out/f'{name}.onnx'), so, providers=['CPUExecutionProvider'])
    logits = np.concatenate([s.run(None, {'faces': x[i:i+256]})[0] for i in range(0, len(x), 256)])
    for _ in range(20): s.run(None, {'faces': x[:1]})
    t = [time.perf_counter()]
    for _ in range(200): s.run(None, {'faces': x[:1]}); t.append(time.perf_counter())
    t64 = time.perf_counter(); s.run(None, {'faces': x[:64]}); t64 = time.perf_counter() - t64
    print(f'  {name}: FERPlus valid {100*(logits.argmax(1) == valid.labels).mean():.2f} %  batch 1 {np.median(np.diff(t))*1e3:.2f} ms/face  '
          f'batch 64 {64/t64:.0f} img/s  file {(out/f"{name}.onnx").stat().st_size/2**20:.1f} MB')
