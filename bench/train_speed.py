"""Training throughput (images/s) of every registered model on this machine: a benchmark, not a test.

    python bench/train_speed.py [--batch-size 128] [--steps 6] [--threads 2] [--device cpu|cuda]

Each model takes `steps` SGD steps on random 48×48 faces (after 2 warm-up steps) with the training
loop's batched augmentation and channels_last, in fp32 (bf16 autocast on CUDA)."""
import argparse, time
import torch, torch.nn.functional as F
from fer_nb.model import create_model, list_models, count_params
from fer_nb.train import augment, make_config

def bench(name, bs, steps, device, amp_dtype):
    m = create_model(name).to(device).train().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, nesterov=True)
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
    a = p.parse_args()
    torch.set_num_threads(a.threads); dev = torch.device(a.device)
    amp = torch.bfloat16 if dev.type == 'cuda' else None
    print(f"device {dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else f'{a.threads} CPU threads'}), batch {a.batch_size}")
    print(f"{'model':18s} {'params':>8s} {'img/s':>8s} {'min/epoch (24,925 faces)':>26s}")
    for n in a.models:
        ips, params = bench(n, a.batch_size, a.steps, dev, amp)
        print(f"{n:18s} {params/1e6:7.2f}M {ips:8.0f} {24925/ips/60:26.1f}", flush=True)
