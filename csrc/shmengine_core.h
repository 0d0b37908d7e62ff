/* shmengine native core: what numba and Python cannot do well.
 *
 * Futex wait and wake for the adaptive wait strategy, a monotonic clock,
 * and the parent-death signal for engine processes. Return codes, no
 * allocation; the hot path calls these only to sleep or to wake a sleeper. */
#ifndef SHMENGINE_CORE_H
#define SHMENGINE_CORE_H
#include <stdint.h>

#define SHME_OK 0
#define SHME_TIMEOUT 1
#define SHME_ERROR (-1)

/* Sleep while *addr == expected, at most timeout_ns (<= 0: no limit).
 * Returns SHME_OK when woken or when *addr already differed, SHME_TIMEOUT,
 * or SHME_ERROR (errno set). Shared (not private) futex: waiter and waker are
 * different processes mapping the same segment. */
int shme_futex_wait(uint32_t *addr, uint32_t expected, int64_t timeout_ns);

/* Wake up to n sleepers on addr. Returns how many were woken or SHME_ERROR. */
int shme_futex_wake(uint32_t *addr, int n);

/* CLOCK_MONOTONIC in ns: the clock every stamp in a segment uses. */
int64_t shme_monotonic_ns(void);

/* Deliver sig to the calling process when its parent dies. */
int shme_set_parent_death_signal(int sig);

/* Let the kernel delay this process's timed sleeps by at most ns (default 50 us),
 * so a paced feed or a sleeping consumer wakes when asked. */
int shme_set_timer_slack(int64_t ns);

#endif
