// cluster/rendezvous.ts — placement: rendezvous (highest-random-weight) hashing over eligible nodes, pins first.
import { createHash } from "node:crypto";

function weight(node: string, shard: number): bigint {
  return createHash("sha256").update(`${node}\u0000${shard}`).digest().readBigUInt64BE(0);
}

/**
 * The node that should own `shard`: its pinned node if that one is eligible, else the eligible node with the
 * highest hash weight. Adding or removing a node moves only the shards it wins or held (about 1/n of them).
 */
export function desiredOwner(shard: number, eligible: readonly string[], pin?: string): string | undefined {
  if (pin !== undefined && eligible.includes(pin)) return pin;
  let best: string | undefined;
  let bestW = -1n;
  for (const n of eligible) {
    const w = weight(n, shard);
    if (w > bestW || (w === bestW && best !== undefined && n < best)) {
      best = n;
      bestW = w;
    }
  }
  return best;
}
