/**
 * Who drives a rollout. The engine asks before every step; with several server replicas, only the
 * holder of a rollout's lease may advance it, roll it back or finish it (the scale-out issue puts a
 * database-backed lease here). One server alone holds every lease.
 */
export interface RolloutLease {
  /** True when this server may drive the rollout now (acquiring or renewing its lease). */
  holds(rolloutId: string): Promise<boolean>;
}

export const singleServerLease: RolloutLease = { holds: async () => true };
