#!/usr/bin/env python3
"""Generate the default sample data in data/raw/ deterministically (run: python scripts/make_sample_data.py).

tool_calls.jsonl: xlam-function-calling-60k style rows ({query, tools, answers} with tools/answers as JSON strings)
for twelve everyday tools. Every row belongs to a `group`: one phrasing template together with its own exclusive
slice of argument values. prepare splits by group (prepare.group_by: group), so the test split's phrasings and
free-form argument values never occur in training and the held-out score measures generalisation, not recall.
Closed vocabularies (currency codes, units, languages, travel modes) are necessarily shared.

practical_qa.jsonl: short practical-skills question/answer pairs with a topic (the Q&A format).

preferences.jsonl: one preference pair per row of both files (the preference format, explicit prompt with its
system turn, canonical tools), for the align step (DPO). Its prompt is the row's, so prepare puts the pair in the
row's split. Chosen is the row's answer; rejected is a near miss: for tool calls, in turn, a wrong argument value, a
missing argument, the wrong function, the right call followed by a spurious second one, or the right call wrapped in
chatty prose; for Q&A the answer without its last sentence (the warning or the check that makes it safe and
complete), or for one-sentence answers without its last clause.
No-call rows (xlam's `answers: []`), about one in four tool rows: 48 requests that none of the twelve tools serves
(twelve phrasing groups of four), and 72 requests of the call rows asked again with their tool left out (one per
single-tool group, in that group). prepare gives them the source's no_call_reply as their answer, so the model
learns when not to call. Each has a pair too: chosen is that reply, rejected a spurious call to an offered tool. And
each missing-tool row's request, with its tool offered, has the mirror pair: chosen the call, rejected that reply.
Then 96 pairs SFT cannot teach, since no SFT row has them: a request that names a tool's job but not its values ("Set a
timer."), where chosen asks for the values and rejected calls the tool with values taken from another row. They
follow no row, so pairs splits them by their phrasing group: held-out phrasings are never trained on.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "data" / "raw"
ROWS_PER_GROUP = 4


def tool(name, description, **params):
    return {
        "name": name,
        "description": description,
        "parameters": {
            arg: dict(zip(("type", "description"), spec[:2]), **({"default": spec[2]} if len(spec) > 2 else {}))
            for arg, spec in params.items()
        },
    }


TOOLS = {
    t["name"]: t
    for t in [
        tool(
            "get_weather",
            "Current weather for a city",
            city=("str", "City name"),
            unit=("str, optional", "celsius or fahrenheit", "celsius"),
        ),
        tool(
            "convert_currency",
            "Convert money between currencies",
            amount=("float", "Amount"),
            from_currency=("str", "ISO code"),
            to_currency=("str", "ISO code"),
        ),
        tool(
            "set_timer",
            "Start a countdown timer",
            minutes=("int", "Duration in minutes"),
            label=("str, optional", "Timer name", ""),
        ),
        tool("send_email", "Send an email", to=("str", "Recipient address"), subject=("str", "Subject line")),
        tool("create_event", "Add a calendar event", title=("str", "Event title"), date=("str", "YYYY-MM-DD")),
        tool(
            "find_recipes",
            "Search recipes by ingredient",
            ingredient=("str", "Main ingredient"),
            max_minutes=("int, optional", "Time limit", 60),
        ),
        tool(
            "get_directions",
            "Route between two places",
            origin=("str", "Start"),
            destination=("str", "End"),
            mode=("str, optional", "driving, walking or transit", "driving"),
        ),
        tool("translate", "Translate text", text=("str", "Text"), target_language=("str", "Language name")),
        tool("add_todo", "Add an item to the to-do list", task=("str", "What to do")),
        tool("get_stock_price", "Latest price of a stock", symbol=("str", "Ticker symbol")),
        tool("play_music", "Play songs by an artist", artist=("str", "Artist name")),
        tool(
            "convert_units",
            "Convert a measurement",
            value=("float", "Value"),
            from_unit=("str", "Unit"),
            to_unit=("str", "Unit"),
        ),
    ]
}

# Free-form value pools; each group takes its own disjoint slice, so no value crosses groups.
POOLS = {
    "city": "Paris Lisbon Oslo Nairobi Lima Hanoi Denver Porto Cairo Dublin Seoul Quito Perth Riga Tunis Austin Leeds Kyoto Bergen Cusco Dakar Malmo Split Tallinn Bruges Hobart Muscat Accra Sapporo Valencia Cork Graz Lyon Zagreb Krakow Bilbao Tromso Busan Medellin Fresno Nantes Utrecht Gdansk Aarhus Brno Haifa".split(),
    "place": [
        "the train station",
        "the airport",
        "city hall",
        "the museum",
        "the stadium",
        "the harbour",
        "the zoo",
        "the library",
        "the mall",
        "the university",
        "the old bridge",
        "the hospital",
        "the beach",
        "the castle",
        "the market",
        "the cathedral",
        "the park",
        "the ferry terminal",
        "the bus depot",
        "the concert hall",
    ],
    "person": "anna@example.com ben@example.com chloe@example.com dev@example.com eli@example.com fay@example.com gus@example.com hana@example.com ivan@example.com jo@example.com kai@example.com lena@example.com milo@example.com nora@example.com omar@example.com pia@example.com quinn@example.com rosa@example.com sam@example.com tara@example.com".split(),
    "topic": [
        "the budget review",
        "Friday's demo",
        "the offsite plan",
        "the new hire",
        "the Q3 numbers",
        "the roadmap",
        "the design draft",
        "the invoice",
        "the trip schedule",
        "the lease renewal",
        "the launch date",
        "the survey results",
        "the audit",
        "the vendor contract",
        "the team lunch",
        "the security patch",
    ],
    "event": [
        "dentist appointment",
        "team retro",
        "piano lesson",
        "car service",
        "book club",
        "yoga class",
        "parent meeting",
        "flight to Rome",
        "haircut",
        "vet visit",
        "tax deadline",
        "garden party",
        "job interview",
        "wedding rehearsal",
        "marathon",
        "board meeting",
    ],
    "ingredient": "chickpeas salmon spinach mushrooms lentils tofu eggplant pumpkin shrimp quinoa zucchini chicken beetroot cauliflower mango tuna couscous leeks halloumi kale".split(),
    "phrase": [
        "good morning",
        "where is the bathroom",
        "thank you very much",
        "how much does this cost",
        "I am allergic to nuts",
        "see you tomorrow",
        "the bill, please",
        "I lost my passport",
        "happy birthday",
        "is this seat taken",
        "what time is it",
        "I need a doctor",
        "nice to meet you",
        "one coffee, please",
        "where is the exit",
        "call a taxi",
    ],
    "chore": [
        "buy milk",
        "renew passport",
        "call the plumber",
        "water the plants",
        "pay the phone bill",
        "return library books",
        "book a dentist visit",
        "clean the gutters",
        "pick up dry cleaning",
        "charge the bike",
        "fix the doorbell",
        "order printer ink",
        "walk the dog",
        "defrost the freezer",
        "back up the laptop",
        "send the birthday card",
    ],
    "symbol": "AAPL MSFT NVDA TSLA AMZN GOOGL META NFLX IBM ORCL INTC AMD SAP SHOP UBER ADBE CRM PYPL SONY NKE".split(),
    "artist": [
        "Miles Davis",
        "Adele",
        "Bob Marley",
        "Nina Simone",
        "Queen",
        "Taylor Swift",
        "Daft Punk",
        "Fela Kuti",
        "Radiohead",
        "Billie Eilish",
        "Ennio Morricone",
        "Aretha Franklin",
        "Coldplay",
        "Bjork",
        "Johnny Cash",
        "Stromae",
        "Kendrick Lamar",
        "Abba",
        "Yo-Yo Ma",
        "Rosalia",
    ],
    "date": [f"2026-{m:02d}-{d:02d}" for m in range(1, 13) for d in (3, 11, 19, 27)],
}
CURRENCIES = ["USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "SEK", "NOK", "INR"]
UNITS = [
    ("km", "miles"),
    ("miles", "km"),
    ("kg", "pounds"),
    ("pounds", "kg"),
    ("celsius", "fahrenheit"),
    ("liters", "gallons"),
    ("inches", "cm"),
    ("feet", "meters"),
]
LANGUAGES = [
    "Spanish",
    "French",
    "German",
    "Japanese",
    "Italian",
    "Portuguese",
    "Korean",
    "Dutch",
    "Swahili",
    "Turkish",
]
MODES = ["walking", "transit", "driving"]


# Which pools each tool draws from; a pool is divided only among the groups that use it.
TOOL_POOLS = {
    "get_weather": ["city"],
    "convert_currency": ["amount"],
    "set_timer": ["minutes"],
    "send_email": ["person", "topic"],
    "create_event": ["event", "date"],
    "find_recipes": ["ingredient"],
    "get_directions": ["place", "city"],
    "translate": ["phrase"],
    "add_todo": ["chore"],
    "get_stock_price": ["symbol"],
    "play_music": ["artist"],
    "convert_units": ["measure"],
}


class Values:
    """Draws argument values for one group from that group's exclusive slice of each pool it uses."""

    def __init__(self, group: int, claims: dict[str, list[int]], rng: random.Random):
        self.group, self.claims, self.rng = group, claims, rng

    def _slot(self, pool: str) -> tuple[int, int]:
        claimants = self.claims[pool]
        return claimants.index(self.group), len(claimants)

    def pick(self, pool: str):
        slot, count = self._slot(pool)
        items = POOLS[pool][slot::count]
        assert items, f"pool {pool!r} has fewer values than the {count} groups that use it"
        return self.rng.choice(items)

    def number(self, pool: str, low: int, high: int) -> int:
        # numbers are partitioned by residue, so two groups never share a value
        slot, count = self._slot(pool)
        value = self.rng.randrange(low, high)
        return value - value % count + slot


def single(values: Values, rng: random.Random) -> dict:
    """One generator per tool: (phrasing templates, argument sampler)."""

    def money() -> dict:
        source, target = rng.sample(CURRENCIES, 2)
        return {"amount": float(values.number("amount", 20, 900)), "from_currency": source, "to_currency": target}

    def measure() -> dict:
        source, target = rng.choice(UNITS)
        return {"value": float(values.number("measure", 3, 500)), "from_unit": source, "to_unit": target}

    return {
        "get_weather": (
            lambda: {"city": values.pick("city")},
            [
                "What's the weather like in {city} right now?",
                "Is it raining in {city}?",
                "How warm is it in {city} today?",
                "Give me the current conditions in {city}.",
                "Should I bring a jacket in {city} today?",
                "Weather check for {city}, please.",
            ],
        ),
        "convert_currency": (
            money,
            [
                "How much is {amount} {from_currency} in {to_currency}?",
                "Convert {amount} {from_currency} to {to_currency}.",
                "What do I get for {amount} {from_currency} in {to_currency}?",
                "Change {amount} {from_currency} into {to_currency} for me.",
                "I have {amount} {from_currency}; what is that in {to_currency}?",
                "Exchange {amount} {from_currency} to {to_currency}, please.",
            ],
        ),
        "set_timer": (
            lambda: {"minutes": values.number("minutes", 2, 90)},
            [
                "Set a timer for {minutes} minutes.",
                "Remind me in {minutes} minutes.",
                "Start a {minutes} minute countdown.",
                "Can you time {minutes} minutes for me?",
                "Timer, {minutes} minutes, go.",
                "Count down {minutes} minutes please.",
            ],
        ),
        "send_email": (
            lambda: {"to": values.pick("person"), "subject": values.pick("topic").capitalize()},
            [
                "Email {to} about {subject}.",
                "Send {to} a note with the subject {subject}.",
                "Write to {to}, subject: {subject}.",
                "Drop {to} an email titled {subject}.",
                "Could you mail {to} regarding {subject}?",
                "Shoot an email to {to} about {subject}.",
            ],
        ),
        "create_event": (
            lambda: {"title": values.pick("event"), "date": values.pick("date")},
            [
                "Put my {title} on {date}.",
                "Add {title} to my calendar for {date}.",
                "Schedule the {title} on {date}.",
                "I have a {title} on {date}, save it.",
                "Create an event '{title}' on {date}.",
                "Book {date} for the {title}.",
            ],
        ),
        "find_recipes": (
            lambda: {"ingredient": values.pick("ingredient")},
            [
                "Find me something to cook with {ingredient}.",
                "Any recipes using {ingredient}?",
                "What can I make with {ingredient}?",
                "Look up dishes with {ingredient}.",
                "I bought {ingredient}, give me recipe ideas.",
                "Search recipes featuring {ingredient}.",
            ],
        ),
        "get_directions": (
            lambda: {"origin": values.pick("place"), "destination": values.pick("city"), "mode": rng.choice(MODES)},
            [
                "How do I get from {origin} to {destination} by {mode}?",
                "Route from {origin} to {destination}, {mode}.",
                "Directions to {destination} from {origin}, I'm {mode}.",
                "Show me the {mode} way from {origin} to {destination}.",
                "I'm at {origin}; guide me to {destination} ({mode}).",
                "Navigate {origin} to {destination} using {mode}.",
            ],
        ),
        "translate": (
            lambda: {"text": values.pick("phrase"), "target_language": rng.choice(LANGUAGES)},
            [
                "How do you say '{text}' in {target_language}?",
                "Translate '{text}' into {target_language}.",
                "What's '{text}' in {target_language}?",
                "Put '{text}' in {target_language} for me.",
                "I need '{text}' in {target_language}.",
                "Say '{text}' in {target_language}.",
            ],
        ),
        "add_todo": (
            lambda: {"task": values.pick("chore")},
            [
                "Add '{task}' to my to-do list.",
                "Don't let me forget to {task}.",
                "Put {task} on my list.",
                "New task: {task}.",
                "Remind me that I need to {task}.",
                "Note down: {task}.",
            ],
        ),
        "get_stock_price": (
            lambda: {"symbol": values.pick("symbol")},
            [
                "What's {symbol} trading at?",
                "Price of {symbol} stock?",
                "How is {symbol} doing today?",
                "Quote for {symbol}, please.",
                "Check the {symbol} share price.",
                "Where is {symbol} right now?",
            ],
        ),
        "play_music": (
            lambda: {"artist": values.pick("artist")},
            [
                "Play some {artist}.",
                "Put on {artist}.",
                "I want to listen to {artist}.",
                "Music by {artist}, please.",
                "Can you play {artist} songs?",
                "Start a {artist} session.",
            ],
        ),
        "convert_units": (
            measure,
            [
                "How many {to_unit} is {value} {from_unit}?",
                "Convert {value} {from_unit} to {to_unit}.",
                "What is {value} {from_unit} in {to_unit}?",
                "{value} {from_unit} equals how many {to_unit}?",
                "Turn {value} {from_unit} into {to_unit}.",
                "Express {value} {from_unit} in {to_unit}.",
            ],
        ),
    }


PAIRS = [
    ("get_weather", "play_music"),
    ("set_timer", "add_todo"),
    ("get_stock_price", "convert_currency"),
    ("find_recipes", "set_timer"),
    ("translate", "send_email"),
    ("create_event", "send_email"),
    ("get_directions", "get_weather"),
    ("convert_units", "find_recipes"),
    ("play_music", "set_timer"),
    ("add_todo", "create_event"),
    ("get_weather", "get_directions"),
    ("get_stock_price", "send_email"),
]
JOINERS = [" Also, ", " And ", " Then ", " After that, ", " Plus, ", " Oh, and "]
TEMPLATES_PER_TOOL = 6


def _lower_first(text: str) -> str:
    return text if text.startswith(("I ", "I'")) else text[0].lower() + text[1:]


def _fill(template: str, args: dict) -> str:
    shown = {k: (f"{v:g}" if isinstance(v, float) else v) for k, v in args.items()}
    return template.format(**shown)


def tool_rows() -> list[dict]:
    rng = random.Random(20261122)
    groups = [("single", name, t) for name in TOOLS for t in range(TEMPLATES_PER_TOOL)]
    groups += [("pair", pair, j) for j, pair in enumerate(PAIRS)]
    claims: dict[str, list[int]] = {}
    for g, (kind, what, _) in enumerate(groups):
        for name in [what] if kind == "single" else what:
            for pool in TOOL_POOLS[name]:
                if g not in claims.setdefault(pool, []):
                    claims[pool].append(g)
    rows = []
    for g, (kind, what, t) in enumerate(groups):
        values = Values(g, claims, rng)
        for _ in range(ROWS_PER_GROUP):
            gens = single(values, rng)
            names = [what] if kind == "single" else list(what)
            texts, answers = [], []
            for k, name in enumerate(names):
                sample, templates = gens[name]
                args = sample()
                template = templates[t if kind == "single" else (t + 3 * k) % TEMPLATES_PER_TOOL]
                texts.append(_fill(template, args))
                answers.append({"name": name, "arguments": args})
            query = texts[0] if kind == "single" else texts[0] + JOINERS[t % len(JOINERS)] + _lower_first(texts[1])
            distractor = rng.choice([n for n in TOOLS if n not in names])
            offered = names + [distractor]
            rng.shuffle(offered)
            rows.append(
                {
                    "id": len(rows),
                    "query": query,
                    "tools": json.dumps([TOOLS[n] for n in offered]),
                    "answers": json.dumps(answers),
                    "group": f"{kind}:{'+'.join(names)}:{t}",
                }
            )
    return rows


# Requests none of the twelve tools serves, some close to one (a ride is not directions, a text is not an email).
NO_CALL = [
    ["Tell me a joke.", "Say something funny.", "Do you know a good pun?", "Make me laugh."],
    ["Write a short poem about autumn.", "Compose a haiku about the sea.", "Give me a limerick about a cat.",
     "Write two lines of verse about rain."],
    ["Who was the first person on the moon?", "When did the Berlin Wall fall?", "Who painted the Mona Lisa?",
     "What year did the Second World War end?"],
    ["What is 17 times 23?", "Is 91 a prime number?", "What's the square root of 144?", "How much is 15% of 80?"],
    ["How can I sleep better?", "Any tips for a job interview?", "How do I stay focused while studying?",
     "What should I pack for a weekend hike?"],
    ["What does 'ephemeral' mean?", "Define photosynthesis.", "What is a black hole?", "Explain what inflation is."],
    ["Book me a table for two at an Italian restaurant.", "Reserve a hotel room in Rome for Friday.",
     "Buy two tickets for the concert tonight.", "Order a pizza for delivery."],
    ["Turn off the living room lights.", "Set the thermostat to 21 degrees.", "Lock the front door.",
     "Start the robot vacuum."],
    ["Send 50 dollars to my brother.", "Pay my electricity bill.", "Transfer 200 euros to my savings account.",
     "Split the dinner bill with Sam."],
    ["Call my mom.", "Text Alex that I'm running late.", "Call a taxi for me.", "Dial the nearest pharmacy."],
    ["Delete my old photos.", "Back up my documents folder.", "Rename this file to report.pdf.",
     "Empty the recycle bin."],
    ["Book me a ride to the airport.", "Order a car to take me home.", "Get me a ride to the station.",
     "Find a shared bike near me."],
]  # fmt: skip


def no_call_rows(first_id: int) -> list[dict]:
    """xlam rows with `answers: []`: one row per request of NO_CALL, two or three tools offered, a group per list."""
    rng = random.Random(20261207)
    rows = []
    for g, requests in enumerate(NO_CALL):
        for request in requests:
            offered = rng.sample(sorted(TOOLS), rng.choice([2, 3]))
            rows.append(
                {
                    "id": first_id + len(rows),
                    "query": request,
                    "tools": json.dumps([TOOLS[n] for n in offered]),
                    "answers": "[]",
                    "group": f"none:{g}",
                }
            )
    return rows


def first_single_rows(tool_rows_: list[dict]) -> list[dict]:
    """The first request of each single-tool phrasing group."""
    first = {}
    for row in tool_rows_:
        if row["group"].startswith("single:"):
            first.setdefault(row["group"], row)
    return list(first.values())


def missing_tool_rows(tool_rows_: list[dict], first_id: int) -> list[dict]:
    """For each single-tool phrasing group, its first request again with only other tools offered: the tool it needs
    is missing, so the right answer is no call. It stays in its request's group (one split), so training sees the
    same words answered both ways, and the choice can only come from the offered tools."""
    rng = random.Random(20261208)
    rows = []
    for row in first_single_rows(tool_rows_):
        (needed,) = (answer["name"] for answer in json.loads(row["answers"]))
        offered = rng.sample(sorted(n for n in TOOLS if n != needed), rng.choice([1, 2]))
        rows.append(
            {
                "id": first_id + len(rows),
                "query": row["query"],
                "tools": json.dumps([TOOLS[n] for n in offered]),
                "answers": "[]",
                "group": row["group"],
            }
        )
    return rows


def no_call_pairs(rows: list[dict], reply: str) -> list[dict]:
    """Chosen: the source's reply in words; rejected: a call to an offered tool, filled from the request's words."""
    from tunemake.data.formats import FORMATS
    from tunemake.params.sources import SourceParams

    rng = random.Random(11)
    source = SourceParams(path="tool_calls.jsonl", format="xlam", no_call_reply=reply)
    out = []
    for row in rows:
        chat = FORMATS["xlam"](row, source)
        prompt = [{"role": "system", "content": TOOL_SYSTEM}, *chat.messages[:-1]]
        call = spurious_call(chat.tools, [], row["query"], rng)
        out.append(
            {
                "prompt": prompt,
                "tools": chat.tools,
                "chosen": [chat.messages[-1]],
                "rejected": [{"role": "assistant", "content": "", "tool_calls": [call]}],
                "group": row["group"],
            }
        )
    return out


def call_pairs(tool_rows_: list[dict], reply: str) -> list[dict]:
    """The mirror of the missing-tool rows' pairs: the same request with its tool offered, chosen the call, rejected
    the reply in words. Without them every tool pair's rejected side is a call, and DPO learned to stop calling
    (docs/benchmarks/defaults.md)."""
    from tunemake.data.formats import FORMATS

    out = []
    for row in first_single_rows(tool_rows_):
        chat = FORMATS["xlam"](row, None)
        prompt = [{"role": "system", "content": TOOL_SYSTEM}, *chat.messages[:-1]]
        out.append(
            {
                "prompt": prompt,
                "tools": chat.tools,
                "chosen": [chat.messages[-1]],
                "rejected": [{"role": "assistant", "content": reply}],
                "group": row["group"],
            }
        )
    return out


QA = {
    "Wilderness Survival Basics": [
        (
            "What is the rule of threes?",
            "You can survive about 3 minutes without air, 3 hours without shelter in harsh weather, 3 days without water and 3 weeks without food. Prioritise in that order.",
        ),
        (
            "How do I signal for help without a phone?",
            "Use three of anything: three fires, three whistle blasts or three mirror flashes. Stay in the open and make your signals large and high-contrast.",
        ),
        (
            "How can I make water safe to drink?",
            "Boil it at a rolling boil for at least one minute, or use purification tablets or a filter. Let silty water settle and pour off the clear part first.",
        ),
        (
            "What should I do if I get lost on a trail?",
            "Stop, stay calm and think. Stay where you are if people know your route, make yourself visible and conserve water and warmth.",
        ),
        (
            "How do I keep warm overnight without a tent?",
            "Get off the ground with a thick bed of leaves or branches, block the wind, wear dry layers and eat something before sleeping.",
        ),
        (
            "How do I start a fire in damp conditions?",
            "Find dry tinder under logs or bark, split wet wood to reach the dry core, and build from tiny twigs upward before adding larger fuel.",
        ),
    ],
    "Basic First Aid": [
        (
            "How do I treat a minor burn?",
            "Cool it under cool running water for 20 minutes, remove rings nearby, then cover loosely with a clean non-stick dressing. Do not use ice or butter.",
        ),
        (
            "What do I do for a sprained ankle?",
            "Rest it, apply a wrapped cold pack for 20 minutes at a time, use a compression bandage and keep the ankle raised.",
        ),
        (
            "How should I stop a bleeding cut?",
            "Press firmly on the wound with a clean cloth for several minutes without lifting it, then clean and cover it. Seek help if it keeps bleeding.",
        ),
        (
            "What are signs of shock?",
            "Pale clammy skin, fast weak pulse, rapid breathing and confusion. Lay the person down, raise their legs, keep them warm and call for help.",
        ),
        (
            "How do I help someone who is choking?",
            "Encourage coughing; if they cannot breathe, give up to five back blows between the shoulder blades, then up to five abdominal thrusts, and call emergency services.",
        ),
        (
            "When does a wound need stitches?",
            "If it is deep, gaping, longer than about 1 cm on the face or 2 cm elsewhere, or keeps bleeding after 10 minutes of pressure.",
        ),
    ],
    "Simple Car Maintenance Checks": [
        (
            "How do I check my engine oil?",
            "With the engine cool and the car level, pull the dipstick, wipe it, reinsert it fully and pull it again. The oil should sit between the two marks.",
        ),
        (
            "What tire pressure should I use?",
            "Use the pressure on the placard inside the driver's door or in the owner's manual, measured when the tires are cold.",
        ),
        (
            "How do I know my brake pads are worn?",
            "Listen for squealing or grinding, notice a longer stopping distance or a pulsing pedal, and look for less than 3 mm of pad through the wheel.",
        ),
        (
            "How do I jump-start a car?",
            "Connect red to the dead battery's positive, red to the good positive, black to the good negative and black to bare metal on the dead car, then start the good car first.",
        ),
        (
            "How often should I replace wiper blades?",
            "About every six to twelve months, or sooner if they streak, skip or squeak.",
        ),
        (
            "How do I check coolant level?",
            "With the engine cold, look at the coolant reservoir; the level should be between the min and max marks. Never open a hot radiator cap.",
        ),
    ],
    "Home Repairs": [
        (
            "How do I fix a running toilet?",
            "Lift the tank lid and check the flapper; if it does not seal, clean or replace it, and adjust the float so the water stops below the overflow tube.",
        ),
        (
            "How do I unclog a sink without chemicals?",
            "Use a cup plunger with some water in the sink, or remove and clean the P-trap under it with a bucket underneath.",
        ),
        (
            "How do I patch a small hole in drywall?",
            "Clean the edges, apply a self-adhesive mesh patch, spread joint compound in thin layers, let it dry, sand smooth and paint.",
        ),
        (
            "How do I stop a dripping faucet?",
            "Shut off the water under the sink, take the handle apart and replace the worn washer or cartridge, then reassemble.",
        ),
        (
            "How do I reset a tripped breaker?",
            "Switch off the appliances on that circuit, find the breaker in the middle position, push it fully off and then back on.",
        ),
        (
            "How do I silence a squeaky door hinge?",
            "Lift the hinge pin partly out, coat it with a little petroleum jelly or light oil, tap it back and swing the door a few times.",
        ),
    ],
    "Cooking Basics": [
        (
            "How long should I rest a steak?",
            "Rest it for about five minutes, or half its cooking time, loosely covered, so the juices settle before slicing.",
        ),
        (
            "How do I know chicken is cooked?",
            "The thickest part should reach 74 C (165 F) on a thermometer and the juices should run clear.",
        ),
        (
            "How do I cook rice on the stove?",
            "Rinse it, use about 1.5 parts water to 1 part rice, bring to a boil, cover and simmer on low for 15 minutes, then rest 5 minutes.",
        ),
        (
            "How long do leftovers keep in the fridge?",
            "Most cooked leftovers keep three to four days in the fridge; cool them within two hours of cooking.",
        ),
        (
            "How do I sharpen a kitchen knife?",
            "Hold the blade at about 15 to 20 degrees on a whetstone and draw it across evenly on both sides, then hone it on a steel.",
        ),
        (
            "How do I stop pasta sticking together?",
            "Use plenty of boiling salted water, stir in the first two minutes and drain without rinsing, then toss with the sauce right away.",
        ),
    ],
}


def qa_rows() -> list[dict]:
    return [{"topic": topic, "question": q, "answer": a} for topic, pairs in QA.items() for q, a in pairs]


# The system prompts params.yaml gives the two sources: a pair's prompt is the row's prompt only with the same one.
TOOL_SYSTEM = "You are a helpful assistant that answers by calling the right functions with the right arguments."
QA_SYSTEM = "You are a practical skills expert. Answer briefly, with concrete steps and any safety warning."
PROSE = ["Sure! Let me take care of that for you.", "Great question. I will look into it right away.", "Okay!"]


def near_miss(calls: list[dict], tools: list[dict], query: str, kind: int, rng: random.Random) -> dict:
    """A plausible wrong answer to a tool-call row: the message an assistant should not send."""
    calls = json.loads(json.dumps(calls))
    call = calls[0]["function"]
    arguments = call["arguments"]
    if kind == 0 and arguments:  # a wrong value for one argument
        name = sorted(arguments)[0]
        value = arguments[name]
        arguments[name] = (
            value * 2 + 1 if isinstance(value, (int, float)) else f"{value} {rng.choice(['Hills', 'North', 'X'])}"
        )
    elif kind == 1 and arguments:  # a required argument left out
        del arguments[sorted(arguments)[-1]]
    elif kind == 2 and len(tools) > 1:  # the wrong function, same arguments
        call["name"] = next(t["function"]["name"] for t in tools if t["function"]["name"] != call["name"])
    elif kind == 3:  # the right call, then one more nobody asked for, filled from the request's words
        calls.append(spurious_call(tools, calls, query, rng))
    else:  # the right call, wrapped in prose a parser will not expect
        return {"role": "assistant", "content": rng.choice(PROSE), "tool_calls": calls}
    return {"role": "assistant", "content": "", "tool_calls": calls}


def spurious_call(tools: list[dict], calls: list[dict], query: str, rng: random.Random) -> dict:
    """A call to an offered tool the answer does not use (else the first one again), its required arguments filled
    with words and numbers of the request: what DPO without such pairs learned to append (docs/benchmarks/alignment.md)."""
    used = {c["function"]["name"] for c in calls}
    spare = [t["function"] for t in tools if t["function"]["name"] not in used] or [tools[0]["function"]]
    function = rng.choice(spare)
    words = re.findall(r"[A-Za-z]+", query) or ["it"]
    numbers = [float(n) for n in re.findall(r"\d+(?:\.\d+)?", query)] or [1.0]
    properties = function["parameters"]["properties"]
    arguments = {
        name: rng.choice(numbers) if properties[name]["type"] in ("number", "integer") else rng.choice(words).lower()
        for name in function["parameters"].get("required", properties)
    }
    return {"type": "function", "function": {"name": function["name"], "arguments": arguments}}


# Requests that leave out what the tool needs, and the question to ask back: preference pairs only (the SFT data
# always has the values), so this is a preference SFT cannot learn and alignment must add.
UNDERSPECIFIED = {
    "get_weather": (
        "Which city would you like the weather for?",
        [
            "What's the weather like right now?",
            "Is it going to rain?",
            "How cold is it out there?",
            "Check the weather for me.",
        ],
    ),
    "convert_currency": (
        "How much would you like to convert, and from which currency to which?",
        [
            "Convert some money for me.",
            "What's the exchange rate?",
            "I need to change currency.",
            "How much is that in my currency?",
        ],
    ),
    "set_timer": (
        "How many minutes should the timer run?",
        ["Set a timer.", "Start a countdown for me.", "Can you time this for me?", "I need a timer please."],
    ),
    "send_email": (
        "Who should I send it to, and what is the subject?",
        [
            "Send an email for me.",
            "Write an email.",
            "Email someone for me please.",
            "I need to send a message by email.",
        ],
    ),
    "create_event": (
        "What is the event called, and on which date?",
        [
            "Add an event to my calendar.",
            "Put something in my calendar.",
            "Schedule an event for me.",
            "Create a calendar entry.",
        ],
    ),
    "find_recipes": (
        "Which main ingredient would you like to cook with?",
        [
            "Find me a recipe.",
            "What can I cook tonight?",
            "Suggest something to make for dinner.",
            "I need a recipe idea.",
        ],
    ),
    "get_directions": (
        "Where are you starting from, and where do you want to go?",
        ["Give me directions.", "How do I get there?", "Find me a route.", "What's the best way to go?"],
    ),
    "translate": (
        "What text should I translate, and into which language?",
        [
            "Translate something for me.",
            "Can you translate a sentence?",
            "I need a translation.",
            "Help me say this in another language.",
        ],
    ),
    "add_todo": (
        "What should I add to your to-do list?",
        [
            "Add something to my to-do list.",
            "Put a task on my list.",
            "Remind me to do something.",
            "Make a note of a task for me.",
        ],
    ),
    "get_stock_price": (
        "Which stock ticker would you like the price for?",
        [
            "How is the stock doing?",
            "Get me a stock price.",
            "What's the share price right now?",
            "Check a stock for me.",
        ],
    ),
    "play_music": (
        "Which artist would you like to hear?",
        ["Play some music.", "Put on some songs.", "I want to listen to music.", "Play something for me."],
    ),
    "convert_units": (
        "What value would you like to convert, and between which units?",
        [
            "Convert a measurement for me.",
            "Change these units for me.",
            "How much is that in other units?",
            "Do a unit conversion.",
        ],
    ),
}


def underspecified_rows(tool_rows_: list[dict], rng: random.Random) -> list[dict]:
    """Per request that names a tool but not its values: chosen asks for them, rejected calls the tool with values
    from another row (what a model trained only on calls does). Two rows per phrasing, with other tools beside it."""
    from tunemake.data.formats import FORMATS

    calls = {}
    for row in tool_rows_:
        answers = json.loads(row["answers"])
        if len(answers) == 1:
            calls.setdefault(answers[0]["name"], []).append(answers[0])
    out = []
    for name, (question, requests) in UNDERSPECIFIED.items():
        for k, request in enumerate(requests):
            for _ in range(2):
                offered = [name, rng.choice([n for n in TOOLS if n != name])]
                rng.shuffle(offered)
                row = {"query": request, "tools": json.dumps([TOOLS[n] for n in offered])}
                chat = FORMATS["xlam"](dict(row, answers=json.dumps([rng.choice(calls[name])])), None)
                prompt = [{"role": "system", "content": TOOL_SYSTEM}, *chat.messages[:-1]]
                chosen = {"role": "assistant", "content": question}
                out.append(
                    {
                        "prompt": prompt,
                        "tools": chat.tools,
                        "chosen": [chosen],
                        "rejected": [chat.messages[-1]],
                        "group": f"underspecified:{name}:{k}",
                    }
                )
    return out


def preference_rows(tool_rows_: list[dict], qa_rows_: list[dict]) -> list[dict]:
    from tunemake.data.formats import FORMATS

    rng = random.Random(7)
    out = []
    for i, row in enumerate(tool_rows_):
        chat = FORMATS["xlam"](row, None)
        answer = chat.messages[-1]
        prompt = [{"role": "system", "content": TOOL_SYSTEM}, *chat.messages[:-1]]
        rejected = near_miss(answer["tool_calls"], chat.tools, row["query"], i % 5, rng)
        out.append(
            {"prompt": prompt, "tools": chat.tools, "chosen": [answer], "rejected": [rejected], "group": row["group"]}
        )
    for row in qa_rows_:
        chat = FORMATS["qa"](row, None)
        answer = chat.messages[-1]["content"]
        prompt = [{"role": "system", "content": QA_SYSTEM}, *chat.messages[:-1]]
        out.append({"prompt": prompt, "chosen": answer, "rejected": without_last_part(answer), "topic": row["topic"]})
    return out + underspecified_rows(tool_rows_, rng)


def without_last_part(answer: str) -> str:
    """The answer cut before its last sentence, or for one sentence before its last clause: the step, check or warning
    that makes it safe and complete is what is missing, and both sides stay alike in length and wording (a generic
    deflection made the held-out pairs a test of answer length, docs/benchmarks/alignment.md)."""
    sentences = answer.split(". ")
    if len(sentences) > 1:
        return ". ".join(sentences[:-1]) + "."
    cut = max(answer.rfind(", "), answer.rfind("; ")) if "," in answer or ";" in answer else answer.rfind(" and ")
    assert cut > 0, f"no clause to drop in {answer!r}"
    return answer[:cut] + "."


def main() -> None:
    from tunemake.params.sources import SourceParams

    OUT.mkdir(parents=True, exist_ok=True)
    tools, qa = tool_rows(), qa_rows()
    none = no_call_rows(len(tools))
    none += missing_tool_rows(tools, len(tools) + len(none))
    reply = SourceParams.model_fields["no_call_reply"].default  # params.yaml gives the source no other
    for name, rows in (
        ("tool_calls.jsonl", tools + none),
        ("practical_qa.jsonl", qa),
        ("preferences.jsonl", preference_rows(tools, qa) + no_call_pairs(none, reply) + call_pairs(tools, reply)),
    ):
        with open(OUT / name, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"{OUT / name}: {len(rows)} rows")


if __name__ == "__main__":
    main()
