#!/usr/bin/python3
# Golden values of tests/unit/test_conv1d.c (test_pytorch_golden): one conv and
# one transposed conv computed by PyTorch (float64) on inputs and weights
# given by formulas, with our weight layouts mapped onto PyTorch's. Run once
# with /usr/bin/python3 (Debian python3-torch); the output is pasted into the test.
import torch
torch.set_default_dtype(torch.float64)
L, cin, cout, K, s = 6, 2, 3, 3, 2
def xv(t, i): return ((t * 7 + i * 3) % 11 - 5) / 5.0
def wv(a, k, c): return ((a * 5 + k * 3 + c * 7) % 13 - 6) / 6.0
def bv(o): return (o - 1) * 0.1
p = (K - 1) // 2
x = torch.tensor([[xv(t, i) for t in range(L)] for i in range(cin)]).unsqueeze(0)  # (1, cin, L)
# conv: ours w[o, k, i] -> torch weight[o, i, k]
conv = torch.nn.Conv1d(cin, cout, K, stride=s, padding=p)
with torch.no_grad():
    conv.weight.copy_(torch.tensor([[[wv(o, k, i) for k in range(K)] for i in range(cin)] for o in range(cout)]))
    conv.bias.copy_(torch.tensor([bv(o) for o in range(cout)]))
y = conv(x)[0].T  # (Lo, cout)
print("conv", y.shape, ", ".join("%.9g" % v for v in y.flatten().tolist()))
# deconv: ours w[i, k, o] -> torch weight[i, o, k]; input cin channels -> cout
dec = torch.nn.ConvTranspose1d(cin, cout, K, stride=s, padding=p, output_padding=s - 1)
with torch.no_grad():
    dec.weight.copy_(torch.tensor([[[wv(i, k, o) for k in range(K)] for o in range(cout)] for i in range(cin)]))
    dec.bias.copy_(torch.tensor([bv(o) for o in range(cout)]))
y = dec(x)[0].T
print("deconv", y.shape, ", ".join("%.9g" % v for v in y.flatten().tolist()))
