// SPDX-License-Identifier: GPL-2.0
/*
 * vp_cpu_lockup: a test module for the real-kernel stall tests. Its init never returns: it
 * disables interrupts on the CPU that runs it and spins, so that CPU's hrtimers (the reference
 * driver's per-CPU heartbeat among them) never fire again. Load it pinned to the CPU to lock:
 *
 *     taskset -c 1 insmod vp_cpu_lockup.ko &
 *
 * Only for throw-away test guests: the CPU stays locked until the guest panics or is killed.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/irqflags.h>
#include <linux/module.h>
#include <linux/processor.h>
#include <linux/smp.h>

static int __init vp_cpu_lockup_init(void)
{
	pr_info("locking CPU %d with interrupts off\n", raw_smp_processor_id());
	local_irq_disable();
	for (;;)
		cpu_relax();
	return 0;
}
module_init(vp_cpu_lockup_init);

MODULE_DESCRIPTION("Real-kernel test helper: hard-locks the CPU that loads it");
MODULE_LICENSE("GPL");
