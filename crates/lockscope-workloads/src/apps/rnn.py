# rnn (paper Table 6; the serverless word generation): a character-level
# LSTM in PyTorch generating a word one letter at a time from a start
# letter. Its weights are randomly initialised (seeded), as nothing can be
# fetched: the computation is the same. One operation: one 20-letter word.
torch = need("torch", "python3-torch")

LETTERS = "abcdefghijklmnopqrstuvwxyz"
LENGTH = 20


class Generator(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(len(LETTERS), 64)
        self.lstm = torch.nn.LSTM(64, 256, num_layers=2)
        self.out = torch.nn.Linear(256, len(LETTERS))

    def forward(self, letter, state):
        output, state = self.lstm(self.embed(letter).view(1, 1, -1), state)
        return self.out(output.view(1, -1)), state


def setup():
    torch.manual_seed(0)
    return Generator().eval(), iter(range(10**12))


def operation(state):
    model, counter = state
    letter = torch.tensor([next(counter) % len(LETTERS)])
    hidden, word = None, []
    with torch.no_grad():
        for _ in range(LENGTH):
            scores, hidden = model(letter, hidden)
            letter = scores.argmax(1)
            word.append(LETTERS[letter.item()])
    return 1


serve("word", setup, operation)
