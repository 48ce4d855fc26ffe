"""Training throughput (images/s) of every registered model on this machine: a benchmark, not a test.

    python bench/train_speed.py [--batch-size 128] [--steps 6] [--threads 2] [--device cpu|cuda]
    python bench/train_speed.py --models faceres --in-size 80 96 112 --freeze 0 7 --set blocks=11 --batch-size 64

Each model takes `steps` SGD steps on random 48×48 faces (after 2 warm-up steps) with the training
loop's batched augmentation and channels_last, in fp32 (bf16 autocast on CUDA). `--in-size` is the side the
network sees (faces are upsampled inside the model, as in training); `--freeze N` keeps the first N feature
layers fixed, as the `freeze` setting does; `--set key=value` passes model options (e.g. blocks=11)."""
import argparse, time
import torch, torch.nn.functional as F
from fer_nb.model import create_model, list_models, count_params
from fer_nb.settings import parse_sets
from fer_nb.train import augment, freeze_features, make_config

def bench(name, bs, steps, device, amp_dtype, in_size=48, freeze=0, kwargs={}):
    m = create_model(name, in_size=in_size, **kwargs).to(device).train().to(memory_format=torch.channels_last)
    freeze_features(m, freeze)
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.01, momentum=0.9, nesterov=True)
    x8 = torch.randint(0, 256, (bs, 1, 48, 48), dtype=torch.uint8, device=device)
    y = torch.randint(0, 7, (bs,), device=device); cfg = make_config()
    for i in range(steps + 2):
        if i == 2:
            if device.type == 'cuda': torch.cuda.synchronize()
            t = time.perf_counter()
        x = augment(x8.float()/255, cfg).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = F.cross_entropy(m(x).float(), y)
        opt.zero_grad(); loss.backward(); opt.step()
    if device.type == 'cuda': torch.cuda.synchronize()
    return steps*bs/(time.perf_counter() - t), count_params(m)

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--batch-size', type=int, default=128); p.add_argument('--steps', type=int, default=6)
    p.add_argument('--threads', type=int, default=2); p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--models', nargs='*', default=list_models())
    p.add_argument('--in-size', type=int, nargs='*', default=[48]); p.add_argument('--freeze', type=int, nargs='*', default=[0])
    p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE', help='a model option (repeatable)')
    a = p.parse_args()
    import yaml; kwargs = {k: yaml.safe_load(v) for k, v in parse_sets(a.set).items()}
    torch.set_num_threads(a.threads); dev = torch.device(a.device)
    amp = torch.bfloat16 if dev.type == 'cuda' else None
    print(f"device {dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else f'{a.threads} CPU threads'}), batch {a.batch_size}")
    print(f"{'model':18s} {'side':>4s} {'frozen':>6s} {'params':>8s} {'img/s':>8s} {'min per 10k faces':>18s}  {kwargs or ''}")
    for n in a.models:
        for side in a.in_size:
            for freeze in a.freeze:
                ips, params = bench(n, a.batch_size, a.steps, dev, amp, side, freeze, kwargs)
                print(f"{n:18s} {side:4d} {freeze:6d} {params/1e6:7.2f}M {ips:8.0f} {10000/ips/60:18.1f}", flush=True)
