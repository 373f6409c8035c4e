/* crashpoint.c -- arming and firing of crash points (see crashpoint.h). */
#include "crashpoint.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef IL_CRASHPOINTS
_Atomic int il_crash_armed = -1;
static _Atomic long remaining = 1;
#endif

static const char *const names[] = {
#define IL_CP_NAME(id, name, what) name,
    IL_CRASH_POINTS(IL_CP_NAME)
#undef IL_CP_NAME
};
static const char *const whats[] = {
#define IL_CP_WHAT(id, name, what) what,
    IL_CRASH_POINTS(IL_CP_WHAT)
#undef IL_CP_WHAT
};

const char *il_crash_name(int id) { return id >= 0 && id < IL_CP_COUNT ? names[id] : NULL; }
const char *il_crash_what(int id) { return id >= 0 && id < IL_CP_COUNT ? whats[id] : NULL; }

#ifndef IL_CRASHPOINTS
int il_crash_arm(const char *name, long nth) { return name && *name ? -2 : 0; }
#else
int il_crash_arm(const char *name, long nth)
{
    if (!name || !*name) {
        atomic_store_explicit(&il_crash_armed, -1, memory_order_relaxed);
        return 0;
    }
    for (int i = 0; i < IL_CP_COUNT; i++) {
        if (strcmp(names[i], name) == 0) {
            atomic_store_explicit(&remaining, nth > 0 ? nth : 1, memory_order_relaxed);
            atomic_store_explicit(&il_crash_armed, i, memory_order_relaxed);
            return 0;
        }
    }
    return -1;
}

void il_crash_hit(int id)
{
    /* relaxed: counts hits of this process only */
    if (atomic_fetch_sub_explicit(&remaining, 1, memory_order_relaxed) == 1)
        _exit(IL_CRASH_EXIT);
}
#endif
