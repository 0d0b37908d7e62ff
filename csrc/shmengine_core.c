#include "shmengine_core.h"

#include <errno.h>
#include <linux/futex.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int shme_futex_wait(uint32_t *addr, uint32_t expected, int64_t timeout_ns)
{
    struct timespec ts, *tsp = NULL;
    if (timeout_ns > 0) {
        ts.tv_sec = timeout_ns / 1000000000;
        ts.tv_nsec = timeout_ns % 1000000000;
        tsp = &ts;
    }
    if (syscall(SYS_futex, addr, FUTEX_WAIT, expected, tsp, NULL, 0) == 0)
        return SHME_OK;
    if (errno == EAGAIN || errno == EINTR)
        return SHME_OK;
    if (errno == ETIMEDOUT)
        return SHME_TIMEOUT;
    return SHME_ERROR;
}

int shme_futex_wake(uint32_t *addr, int n)
{
    long woken = syscall(SYS_futex, addr, FUTEX_WAKE, n, NULL, NULL, 0);
    return woken < 0 ? SHME_ERROR : (int)woken;
}

int64_t shme_monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int shme_set_parent_death_signal(int sig)
{
    return prctl(PR_SET_PDEATHSIG, sig) == 0 ? SHME_OK : SHME_ERROR;
}

int shme_set_timer_slack(int64_t ns)
{
    return prctl(PR_SET_TIMERSLACK, (unsigned long)ns) == 0 ? SHME_OK : SHME_ERROR;
}
