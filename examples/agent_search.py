"""A small agent loop that uses only archdb's MCP tools: predictor-guided search over
NAS-Bench-201 against random search with the same number of true lookups.

Guided search, per round: propose candidate cells (mutations of the best cell found so far and
random cells), rank them with `rank_candidates` (the accuracy predictor, milliseconds, no
training), look up the truth of the best-ranked new cell with `nb201_lookup`, keep the best.
Random search looks up random cells. Both spend `--lookups` true lookups; regret is the best
CIFAR-10 test accuracy of all 15,625 cells (cell 6111, 94.37 %) minus the best one found.

    pip install mcp                      # or: export PY=$(.ci/mcp-venv.sh)
    python examples/agent_search.py --url http://127.0.0.1:8080/mcp      # a running archdb serve
    python examples/agent_search.py --command target/release/archdb      # spawns `archdb mcp`

It needs the complete NB201 data (the starter set `archdb serve` loads into an empty database)
and an active NB201 CIFAR-10 predictor (the bundled one). Results: docs/agents.md.
"""

import argparse
import asyncio
import os
import random
import statistics

from mcp import Client, StdioServerParameters

OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]


def arch_string(ops):
    """NB201 arch string of the six edge ops (node 1 <- 0; node 2 <- 0, 1; node 3 <- 0, 1, 2)."""
    return "|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*ops)


def mutate(ops, rng):
    ops = list(ops)
    edge = rng.randrange(6)
    ops[edge] = rng.choice([o for o in OPS if o != ops[edge]])
    return tuple(ops)


def random_cell(rng):
    return tuple(rng.choice(OPS) for _ in range(6))


async def tool(client, name, args):
    result = await client.call_tool(name, args)
    if result.is_error:
        raise RuntimeError(result.content[0].text)
    return result.structured_content


async def true_accuracy(client, ops):
    """CIFAR-10 test accuracy (%) after 200 epochs, mean over seeds: the NB201 ground truth."""
    return await lookup(client, arch_string(ops))


async def lookup(client, cell):
    cell = await tool(client, "nb201_lookup", {"cell": cell})
    return next(f["value"] for f in cell["figures"]
                if f["dataset"] == "cifar10" and f["split"] == "test" and f["metric"] == "acc" and f["epoch"] == 200)


async def guided(client, rng, lookups, proposals):
    seen, best = {}, None
    for _ in range(lookups):
        proposed = [random_cell(rng) for _ in range(proposals // 2)]
        if best is not None:
            proposed += [mutate(best, rng) for _ in range(proposals // 2)]
        candidates = [c for c in dict.fromkeys(proposed) if c not in seen]
        ranked = await tool(client, "rank_candidates",
                            {"nb201": [arch_string(c) for c in candidates], "top_k": 1})
        choice = candidates[ranked["ranked"][0]["input"]]
        seen[choice] = await true_accuracy(client, choice)
        best = max(seen, key=seen.get)
    return seen[best]


async def random_search(client, rng, lookups):
    found = []
    for _ in range(lookups):
        found.append(await true_accuracy(client, random_cell(rng)))
    return max(found)


async def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="archdb's /mcp endpoint (Streamable HTTP)")
    parser.add_argument("--command", default="archdb", help="archdb binary to run as `archdb mcp` (stdio)")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--lookups", type=int, default=10, help="true lookups per search")
    parser.add_argument("--proposals", type=int, default=200, help="candidates ranked per round")
    args = parser.parse_args()
    # stdio: `archdb mcp` on the database this environment names.
    env = {k: os.environ[k] for k in ("DATABASE_URL", "ARCHDB_DATA_DIR") if k in os.environ}
    server = args.url or StdioServerParameters(command=args.command, args=["mcp", "--no-seed"], env=env)
    async with Client(server) as client:
        # The best of the 15,625 cells on CIFAR-10 test (NATS-Bench: cell 6111).
        optimum = await lookup(client, 6111)
        print(f"best NB201 CIFAR-10 test accuracy (cell 6111): {optimum:.2f} %")
        regrets = {"guided": [], "random": []}
        for seed in range(args.seeds):
            g = await guided(client, random.Random(seed), args.lookups, args.proposals)
            r = await random_search(client, random.Random(1000 + seed), args.lookups)
            regrets["guided"].append(optimum - g)
            regrets["random"].append(optimum - r)
            print(f"seed {seed}: guided best {g:.2f} (regret {optimum - g:.2f}), "
                  f"random best {r:.2f} (regret {optimum - r:.2f})")
        for name, values in regrets.items():
            print(f"{name}: mean regret {statistics.mean(values):.2f} ± {statistics.stdev(values):.2f} "
                  f"(median {statistics.median(values):.2f}) over {args.seeds} seeds, {args.lookups} lookups each")


if __name__ == "__main__":
    asyncio.run(main())
