"""A zuko neural spline flow with the training loop of this script. The harness calls fit(train, val)
within the job's budget, then measures the flow: its call gives the distribution (log_prob, sample)."""

import torch
import zuko


class Flow(torch.nn.Module):
    def __init__(self, features, transforms, hidden, steps, lr):
        super().__init__()
        self.flow = zuko.flows.NSF(features, transforms=transforms, hidden_features=[hidden, hidden])
        self.steps, self.lr = steps, lr

    def forward(self):
        return self.flow()

    def fit(self, train, val):
        optimiser = torch.optim.Adam(self.parameters(), lr=self.lr)
        for step in range(self.steps):
            x = train[torch.randint(len(train), (256,))]
            loss = -self.flow().log_prob(x).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()


def nsf(spec, transforms=3, hidden=64, steps=1000, lr=3e-3):
    return Flow(spec.dim, transforms, hidden, steps, lr)
