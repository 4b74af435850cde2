"""``batchsep models``: the model names ``enhance`` accepts, what they are, how good and fast."""

from __future__ import annotations

import json

import click

from batchsep.cli.common import EPILOG_MODELS


def _num(v: object, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


@click.command(
    epilog=EPILOG_MODELS,
    short_help="List the model names --model and --emotion-model accept, with quality and speed.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per model, all fields.")
def models(as_json: bool) -> None:
    """List every name --model and --emotion-model accept: role, sample rate, parameters, SDR gain on
    the VoiceBank pairs and speed per core (measured: bench/zoo_card.py), licence, weights source.

    Zoo models need `pip install 'batchsep[zoo]'`; fuse zoo systems with --model A+B (their outputs
    averaged). Quality costs speed: deepfilternet3 is the best and about 20x slower than default.
    """
    import batchsep.api

    rows = batchsep.api.models()
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    head = (
        f"{'name':<24} {'role':<9} {'rate':>6} {'params':>9} {'SDRi dB':>8} {'xRT/core':>9}  status"
    )
    click.echo(head)
    for r in rows:
        click.echo(
            f"{r['name']:<24} {r['role']:<9} {r['sample_rate']:>6} {_num(r['parameters'], ',d'):>9} "
            f"{_num(r['voicebank_sdri_db'], '+.2f'):>8} {_num(r['x_real_time_per_core'], '.0f'):>9}  "
            f"{r['status']}"
        )
    click.echo("\nlicence and weights source:")
    for r in rows:
        click.echo(f"  {r['name']}: {r['licence']}\n    from {r['source']}")
    click.echo(
        "\nSDRi: mean SDR gain on the 6 real VoiceBank+DEMAND pairs (high input SNR); xRT/core: seconds "
        "of audio per CPU second, one thread. `bench/zoo.py` compares more data and DNSMOS."
    )
