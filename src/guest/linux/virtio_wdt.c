// SPDX-License-Identifier: GPL-2.0
/*
 * virtio_wdt: reference guest driver for the VirtioPanic watchdog and panic device
 * (virtio device ID 35), as specified in spec/virtio-watchdog.md. Section numbers (§n) and
 * requirement names (WDT-DRV-n) refer to that chapter.
 *
 * - The watchdog is registered with the watchdog core, so /dev/watchdog, busybox watchdog and
 *   systemd work. Without VIRTIO_WDT_F_CONTROL it uses the baseline heartbeat protocol (§6.2):
 *   start and ping are heartbeats, the timeout is the device's and the device cannot be
 *   stopped. With CONTROL, start, stop, ping, set_timeout, get_timeleft and nowayout are
 *   control requests (§6.3), and with VIRTIO_WDT_F_PRETIMEOUT the device's notices drive the
 *   pretimeout governor (§6.4).
 * - A panic notifier reports PANICKED, or CRASH_LOADED when a crash kernel is loaded, through an
 *   event record posted at probe time (VIRTIO_WDT_F_EVENTS, §6.5), with the panic message and,
 *   with VIRTIO_WDT_F_LOG_TAIL, the tail of the kernel log. The panic path only fills memory,
 *   commits and notifies: no allocation, no lock, no sleep. When no record is acknowledged within
 *   a bounded time it falls back to panic_events in the configuration space
 *   (VIRTIO_WDT_F_PANIC_CONFIG, §6.6).
 * - A reboot notifier reports SHUTDOWN the same way.
 * - boot_reason (VIRTIO_WDT_F_BOOT_REASON, §6.7) sets WDIOF_CARDRESET in the boot status when the
 *   host reset the VM because this watchdog expired, and is shown in sysfs.
 * - With VIRTIO_WDT_F_VCPU_STALL (§6.12) every online CPU pets vcpu_heartbeat from its own pinned
 *   hrtimer every vcpu_timeout_ms / 4 (one register write), CPU hotplug starts and stops it, and
 *   a VCPU_STALL notice on noticeq panics the guest naming the stalled CPU (vcpu_stall_panic=0:
 *   only logs).
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/completion.h>
#include <linux/cpuhotplug.h>
#include <linux/delay.h>
#include <linux/hrtimer.h>
#include <linux/jiffies.h>
#include <linux/kexec.h>
#include <linux/kmsg_dump.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/panic_notifier.h>
#include <linux/percpu.h>
#include <linux/reboot.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/sysfs.h>
#include <linux/timekeeping.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/watchdog.h>
#include <linux/workqueue.h>

#include "virtio_wdt.h"

#define VIRTIO_WDT_RECORDS		4	/* record buffers posted at probe (§6.10) */
#define VIRTIO_WDT_NOTICES		2	/* notice buffers posted at probe */
#define VIRTIO_WDT_HEARTBEAT_LEN	8	/* what existing drivers post (§6.2) */
#define VIRTIO_WDT_REQUEST_TIMEOUT_MS	3000	/* a watchdogq request is answered at once */
#define VIRTIO_WDT_PANIC_EVENTS_ALL	(VIRTIO_WDT_PANIC_PANICKED | \
					 VIRTIO_WDT_PANIC_CRASH_LOADED | \
					 VIRTIO_WDT_PANIC_SHUTDOWN)

static bool nowayout = WATCHDOG_NOWAYOUT;
module_param(nowayout, bool, 0444);
MODULE_PARM_DESC(nowayout, "Watchdog cannot be stopped once started (default="
		 __MODULE_STRING(WATCHDOG_NOWAYOUT) ")");

static unsigned int timeout;
module_param(timeout, uint, 0444);
MODULE_PARM_DESC(timeout, "Initial timeout in seconds with CONTROL (0 = device default)");

static unsigned int panic_wait_ms = 1000;
module_param(panic_wait_ms, uint, 0644);
MODULE_PARM_DESC(panic_wait_ms, "Bounded wait for a record's acknowledgement (ms)");

static bool log_tail = true;
module_param(log_tail, bool, 0644);
MODULE_PARM_DESC(log_tail, "Attach a kernel log tail to panic records (LOG_TAIL)");

static bool events = true;
module_param(events, bool, 0444);
MODULE_PARM_DESC(events, "Negotiate VIRTIO_WDT_F_EVENTS (0: reports go through panic_events only)");

static bool clear_boot_reason = true;
module_param(clear_boot_reason, bool, 0444);
MODULE_PARM_DESC(clear_boot_reason, "Clear boot_reason (write 0) once read");

static bool vcpu_stall_panic = true;
module_param(vcpu_stall_panic, bool, 0644);
MODULE_PARM_DESC(vcpu_stall_panic, "Panic on a VCPU_STALL notice (0: only log it)");

/* The dynamic CPU-hotplug state whose instances are the devices with VCPU_STALL (module init). */
static enum cpuhp_state virtio_wdt_cpuhp_state;

enum virtio_wdt_slot_state {
	VIRTIO_WDT_SLOT_IDLE,		/* not available to the device */
	VIRTIO_WDT_SLOT_POSTED,		/* available and uncommitted: free for the next report */
	VIRTIO_WDT_SLOT_CLAIMED,	/* a reporter owns it: filling, or committed */
	VIRTIO_WDT_SLOT_USED,		/* the device returned it */
};

/*
 * One CPU's heartbeat (§6.12). sequence and petting are touched only on that CPU: by its pinned
 * hrtimer (hard interrupt), by its hotplug callbacks (its hotplug thread), which write only
 * before the timer is started or after hrtimer_cancel() returned, and by a stall panic starting
 * there (hard interrupt, so not while the timer runs). They need no lock.
 */
struct virtio_wdt_vcpu {
	struct hrtimer timer;		/* HRTIMER_MODE_REL_PINNED: fires on this CPU only */
	struct virtio_wdt *vw;
	u16 index;			/* the CPU number, i.e. the vCPU index (§4) */
	u16 sequence;			/* of the last write: 1..VIRTIO_WDT_VCPU_SEQ_MAX, 0 before */
	bool petting;			/* PET written since the CPU came online, no OFFLINE since */
};

/* One record buffer on eventq: the readable record and the writable status. */
struct virtio_wdt_slot {
	struct virtio_wdt_record *record;
	struct virtio_wdt_record_status *status;
	atomic_t state;			/* enum virtio_wdt_slot_state */
	atomic_t busy;			/* a reporter still reads the status */
	u32 posted;			/* when it was made available, for WDT-DRV-10 */
};

struct virtio_wdt {
	struct virtio_device *vdev;
	struct watchdog_device wdd;
	struct watchdog_info info;
	u64 features;			/* negotiated */
	bool ready;			/* queues live; false across freeze and remove */

	/* watchdogq: one request at a time (request_lock), answered by the queue callback */
	struct virtqueue *watchdog_vq;
	struct mutex request_lock;
	spinlock_t watchdog_vq_lock;
	struct completion request_done;
	bool request_in_flight;
	unsigned int request_used_len;
	u8 *heartbeat;
	struct virtio_wdt_ctrl_req *req;
	struct virtio_wdt_ctrl_resp *resp;
	bool armed;			/* baseline: a heartbeat armed the device */
	unsigned long last_keepalive;	/* baseline: jiffies of the last heartbeat */

	/* eventq */
	struct virtqueue *event_vq;
	spinlock_t event_vq_lock;	/* posting and reaping; never taken by a reporter */
	struct virtio_wdt_slot slots[VIRTIO_WDT_RECORDS];
	size_t record_size;		/* readable bytes per record buffer */
	u32 posted_count;
	atomic_t record_sequence;
	struct work_struct repost_work;

	/* noticeq */
	struct virtqueue *notice_vq;
	spinlock_t notice_vq_lock;
	struct virtio_wdt_notice *notices;

	/* per-CPU heartbeats (VCPU_STALL, §6.12) */
	struct virtio_wdt_vcpu __percpu *vcpus;
	struct hlist_node cpuhp_node;	/* instance of virtio_wdt_cpuhp_state */
	struct mutex vcpu_lock;		/* serialises adding and removing the instance */
	bool vcpu_started;		/* the instance is added: every online CPU pets (vcpu_lock) */
	/*
	 * Set by the reboot notifier: each CPU's timer writes OFFLINE at its next expiry and stops.
	 * A plain flag (WRITE_ONCE/READ_ONCE): the timers need only see it eventually, and each
	 * one's OFFLINE is still ordered after its own last PET because both run on that CPU.
	 */
	bool vcpu_stopping;
	u32 vcpu_count;			/* slots the device tracks; 0: per-CPU heartbeats off */
	u32 vcpu_timeout_ms;
	u32 vcpu_stage2_ms;
	ktime_t vcpu_period;		/* vcpu_timeout_ms / 4 */

	/* configuration (§4) */
	u32 default_timeout_ms;
	u32 min_timeout_ms;
	u32 max_timeout_ms;
	u32 panic_events;		/* supported bits; 0 without PANIC_CONFIG */
	u32 boot_reason;
	struct work_struct config_work;

	struct notifier_block panic_nb;
	struct notifier_block reboot_nb;
	atomic_t panic_reported;
	atomic_t shutdown_reported;
};

static_assert(sizeof(struct virtio_wdt_config) == 36);
static_assert(offsetof(struct virtio_wdt_config, vcpu_count) == 0x14);
static_assert(offsetof(struct virtio_wdt_config, vcpu_heartbeat) == 0x20);
static_assert(sizeof(struct virtio_wdt_ctrl_req) == 16);
static_assert(sizeof(struct virtio_wdt_ctrl_resp) == 16);
static_assert(sizeof(struct virtio_wdt_notice) == 16);
static_assert(sizeof(struct virtio_wdt_record) == 80);
static_assert(sizeof(struct virtio_wdt_record_status) == 8);

static bool virtio_wdt_has(const struct virtio_wdt *vw, unsigned int fbit)
{
	return vw->features & BIT_ULL(fbit);
}

/* §2: noticeq is present with PRETIMEOUT or VCPU_STALL (WDT-DRV-20). */
static bool virtio_wdt_has_notices(const struct virtio_wdt *vw)
{
	return virtio_wdt_has(vw, VIRTIO_WDT_F_PRETIMEOUT) ||
	       virtio_wdt_has(vw, VIRTIO_WDT_F_VCPU_STALL);
}

static const char *virtio_wdt_boot_reason_name(u32 reason)
{
	switch (reason) {
	case VIRTIO_WDT_BOOT_NONE:
		return "none";
	case VIRTIO_WDT_BOOT_WATCHDOG:
		return "watchdog";
	case VIRTIO_WDT_BOOT_PANIC:
		return "panic";
	case VIRTIO_WDT_BOOT_HOST:
		return "host";
	default:
		return "unknown";
	}
}

static const char *virtio_wdt_record_name(u16 type)
{
	switch (type) {
	case VIRTIO_WDT_RECORD_PANIC:
		return "panic";
	case VIRTIO_WDT_RECORD_CRASH_LOADED:
		return "crash-loaded";
	default:
		return "shutdown";
	}
}

/* ---- watchdogq: heartbeats and control requests ---- */

static void virtio_wdt_watchdog_done(struct virtqueue *vq)
{
	struct virtio_wdt *vw = vq->vdev->priv;
	unsigned long flags;
	unsigned int len;

	spin_lock_irqsave(&vw->watchdog_vq_lock, flags);
	while (virtqueue_get_buf(vq, &len)) {
		vw->request_used_len = len;
		vw->request_in_flight = false;
		complete(&vw->request_done);
	}
	spin_unlock_irqrestore(&vw->watchdog_vq_lock, flags);
}

/*
 * Sends one chain on watchdogq and waits for the device to return it (WDT-DRV-17). Returns the
 * used length or a negative errno. A request that times out leaves its buffers with the device,
 * so no further request is sent until it comes back; callers check virtio_wdt_request_idle()
 * before they write into the buffers, and this check stays as the last line of defence.
 */
static int virtio_wdt_transact(struct virtio_wdt *vw, struct scatterlist **sgs,
			       unsigned int out, unsigned int in)
{
	unsigned long flags;
	int err;

	lockdep_assert_held(&vw->request_lock);
	if (!vw->ready)
		return -ENODEV;

	spin_lock_irqsave(&vw->watchdog_vq_lock, flags);
	if (vw->request_in_flight) {
		spin_unlock_irqrestore(&vw->watchdog_vq_lock, flags);
		return -EBUSY;
	}
	reinit_completion(&vw->request_done);
	err = virtqueue_add_sgs(vw->watchdog_vq, sgs, out, in, vw, GFP_ATOMIC);
	if (!err) {
		vw->request_in_flight = true;
		virtqueue_kick(vw->watchdog_vq);
	}
	spin_unlock_irqrestore(&vw->watchdog_vq_lock, flags);
	if (err)
		return err;

	if (!wait_for_completion_timeout(&vw->request_done,
					 msecs_to_jiffies(VIRTIO_WDT_REQUEST_TIMEOUT_MS))) {
		dev_warn_ratelimited(&vw->vdev->dev, "watchdog queue request not answered\n");
		return -ETIMEDOUT;
	}
	return vw->request_used_len;
}

/*
 * True when no request is with the device, so the heartbeat, request and response buffers are
 * the driver's to write. A buffer made available belongs to the device until it comes back used
 * (virtio 1.2 §2.7.13, "Supplying Buffers to The Device", and WDT-DRV-9/17); a request that
 * timed out is still the device's, and writing into it then could change what the device reads
 * or be overwritten by its late answer. Only the queue callback clears request_in_flight, and
 * request_lock (held here) keeps every other sender out, so an idle answer stays true until this
 * thread sends.
 */
static bool virtio_wdt_request_idle(struct virtio_wdt *vw)
{
	unsigned long flags;
	bool idle;

	lockdep_assert_held(&vw->request_lock);
	spin_lock_irqsave(&vw->watchdog_vq_lock, flags);
	idle = !vw->request_in_flight;
	spin_unlock_irqrestore(&vw->watchdog_vq_lock, flags);
	return idle;
}

/* Baseline heartbeat (§6.2): one device-writable buffer whose first byte the device sets to 1. */
static int virtio_wdt_heartbeat(struct virtio_wdt *vw)
{
	struct scatterlist sg, *sgs[] = { &sg };
	int len;

	if (!vw->ready)
		return -ENODEV;
	if (!virtio_wdt_request_idle(vw))
		return -EBUSY;		/* the last heartbeat buffer is still the device's */
	vw->heartbeat[0] = 0;		/* WDT-DRV-2 */
	sg_init_one(&sg, vw->heartbeat, VIRTIO_WDT_HEARTBEAT_LEN);
	len = virtio_wdt_transact(vw, sgs, 0, 1);
	if (len < 0)
		return len;
	if (len != VIRTIO_WDT_HEARTBEAT_LEN || READ_ONCE(vw->heartbeat[0]) != 1) {
		dev_err_ratelimited(&vw->vdev->dev,
				    "device fault: heartbeat returned %d bytes, first byte %u\n",
				    len, vw->heartbeat[0]);
		return -EIO;
	}
	vw->armed = true;
	vw->last_keepalive = jiffies;
	return 0;
}

static int virtio_wdt_status_errno(u16 status)
{
	switch (status) {
	case VIRTIO_WDT_S_OK:
		return 0;
	case VIRTIO_WDT_S_UNSUPPORTED:
		return -EOPNOTSUPP;
	case VIRTIO_WDT_S_INVALID:
		return -EINVAL;
	case VIRTIO_WDT_S_DENIED:
		return -EBUSY;
	case VIRTIO_WDT_S_NOT_ARMED:
		return -ENOENT;
	default:
		return -EIO;
	}
}

/*
 * A control request (§6.3, WDT-DRV-5): 16 readable bytes, reserved fields zero, then 16
 * writable bytes. On return *resp holds the device's answer (the state after the command).
 */
static int virtio_wdt_control(struct virtio_wdt *vw, u16 command, u32 value_ms,
			      struct virtio_wdt_ctrl_resp *resp)
{
	struct scatterlist req_sg, resp_sg, *sgs[] = { &req_sg, &resp_sg };
	int len;

	if (!vw->ready)
		return -ENODEV;
	if (!virtio_wdt_request_idle(vw))
		return -EBUSY;		/* the last request's buffers are still the device's */
	memset(vw->req, 0, sizeof(*vw->req));
	vw->req->command = cpu_to_le16(command);
	vw->req->value_ms = cpu_to_le32(value_ms);
	memset(vw->resp, 0, sizeof(*vw->resp));
	sg_init_one(&req_sg, vw->req, sizeof(*vw->req));
	sg_init_one(&resp_sg, vw->resp, sizeof(*vw->resp));
	len = virtio_wdt_transact(vw, sgs, 1, 1);
	if (len < 0)
		return len;
	if (len != sizeof(*vw->resp)) {
		dev_err_ratelimited(&vw->vdev->dev,
				    "device fault: control request %u returned %d bytes\n",
				    command, len);
		return -EIO;
	}
	*resp = *vw->resp;
	return virtio_wdt_status_errno(le16_to_cpu(resp->status));
}

/* ---- watchdog core operations ---- */

static int virtio_wdt_start_locked(struct virtio_wdt *vw)
{
	struct watchdog_device *wdd = &vw->wdd;
	struct virtio_wdt_ctrl_resp resp;
	int err;

	if (!virtio_wdt_has(vw, VIRTIO_WDT_F_CONTROL))
		return virtio_wdt_heartbeat(vw);	/* the first heartbeat arms it */

	err = virtio_wdt_control(vw, VIRTIO_WDT_CMD_START, wdd->timeout * 1000, &resp);
	if (err)
		return err;
	if (virtio_wdt_has(vw, VIRTIO_WDT_F_PRETIMEOUT) && wdd->pretimeout &&
	    le32_to_cpu(resp.pretimeout_ms) != wdd->pretimeout * 1000)
		virtio_wdt_control(vw, VIRTIO_WDT_CMD_SET_PRETIMEOUT, wdd->pretimeout * 1000, &resp);

	/*
	 * nowayout in force: the device refuses STOP and keeps the watchdog running across a
	 * device reset (§6.8), like a hardware watchdog software cannot stop.
	 */
	if (test_bit(WDOG_NO_WAY_OUT, &wdd->status) &&
	    !(le16_to_cpu(resp.flags) & VIRTIO_WDT_FLAG_NOWAYOUT)) {
		err = virtio_wdt_control(vw, VIRTIO_WDT_CMD_SET_NOWAYOUT, 0, &resp);
		if (err)
			dev_warn(&vw->vdev->dev, "SET_NOWAYOUT failed: %d\n", err);
	}
	return 0;
}

static int virtio_wdt_start(struct watchdog_device *wdd)
{
	struct virtio_wdt *vw = watchdog_get_drvdata(wdd);
	int err;

	mutex_lock(&vw->request_lock);
	err = virtio_wdt_start_locked(vw);
	mutex_unlock(&vw->request_lock);
	return err;
}

static int virtio_wdt_stop(struct watchdog_device *wdd)
{
	struct virtio_wdt *vw = watchdog_get_drvdata(wdd);
	struct virtio_wdt_ctrl_resp resp;
	int err;

	mutex_lock(&vw->request_lock);
	err = virtio_wdt_control(vw, VIRTIO_WDT_CMD_STOP, 0, &resp);
	mutex_unlock(&vw->request_lock);
	if (err == -EBUSY)
		dev_info(&vw->vdev->dev, "the device has NOWAYOUT set: the watchdog keeps running\n");
	return err;
}

static int virtio_wdt_ping(struct watchdog_device *wdd)
{
	struct virtio_wdt *vw = watchdog_get_drvdata(wdd);
	struct virtio_wdt_ctrl_resp resp;
	int err;

	mutex_lock(&vw->request_lock);
	if (!virtio_wdt_has(vw, VIRTIO_WDT_F_CONTROL)) {
		err = virtio_wdt_heartbeat(vw);
	} else {
		err = virtio_wdt_control(vw, VIRTIO_WDT_CMD_KEEPALIVE, 0, &resp);
		if (err == -ENOENT) {
			/* Disarmed behind our back (it expired, or the device was reset). */
			dev_warn_ratelimited(&vw->vdev->dev, "watchdog was not armed (flags 0x%x): re-arming\n",
					     le16_to_cpu(resp.flags));
			err = virtio_wdt_start_locked(vw);
		}
	}
	mutex_unlock(&vw->request_lock);
	return err;
}

static int virtio_wdt_set_timeout(struct watchdog_device *wdd, unsigned int t)
{
	struct virtio_wdt *vw = watchdog_get_drvdata(wdd);
	struct virtio_wdt_ctrl_resp resp;
	int err;

	if (!t)
		return -EINVAL;
	/* WDT-DRV-6: the core keeps t within [min_timeout, max_timeout], the device's bounds. */
	mutex_lock(&vw->request_lock);
	err = virtio_wdt_control(vw, VIRTIO_WDT_CMD_SET_TIMEOUT, t * 1000, &resp);
	mutex_unlock(&vw->request_lock);
	if (err)
		return err;

	wdd->timeout = t;
	if (virtio_wdt_has(vw, VIRTIO_WDT_F_PRETIMEOUT))
		wdd->pretimeout = le32_to_cpu(resp.pretimeout_ms) / 1000;
	else if (wdd->pretimeout >= t)
		wdd->pretimeout = 0;		/* the core's own pretimeout must fit too */
	return 0;
}

static int virtio_wdt_set_pretimeout(struct watchdog_device *wdd, unsigned int t)
{
	struct virtio_wdt *vw = watchdog_get_drvdata(wdd);
	struct virtio_wdt_ctrl_resp resp;
	int err;

	/* Only reached with WDIOF_PRETIMEOUT, i.e. PRETIMEOUT negotiated (WDT-DRV-7). */
	mutex_lock(&vw->request_lock);
	err = virtio_wdt_control(vw, VIRTIO_WDT_CMD_SET_PRETIMEOUT, t * 1000, &resp);
	mutex_unlock(&vw->request_lock);
	if (!err)
		wdd->pretimeout = t;
	return err;
}

static unsigned int virtio_wdt_get_timeleft(struct watchdog_device *wdd)
{
	struct virtio_wdt *vw = watchdog_get_drvdata(wdd);
	struct virtio_wdt_ctrl_resp resp;
	unsigned int left = 0;

	mutex_lock(&vw->request_lock);
	if (virtio_wdt_has(vw, VIRTIO_WDT_F_CONTROL)) {
		if (!virtio_wdt_control(vw, VIRTIO_WDT_CMD_GET_STATUS, 0, &resp))
			left = le32_to_cpu(resp.time_left_ms) / 1000;
	} else if (vw->armed) {
		/* The device bites exactly default_timeout_ms after the last heartbeat (§6.2). */
		unsigned int elapsed = jiffies_to_msecs(jiffies - vw->last_keepalive);

		if (elapsed < vw->default_timeout_ms)
			left = (vw->default_timeout_ms - elapsed) / 1000;
	}
	mutex_unlock(&vw->request_lock);
	return left;
}

/* With CONTROL: every operation is a control request. */
static const struct watchdog_ops virtio_wdt_control_ops = {
	.owner = THIS_MODULE,
	.start = virtio_wdt_start,
	.stop = virtio_wdt_stop,
	.ping = virtio_wdt_ping,
	.set_timeout = virtio_wdt_set_timeout,
	.set_pretimeout = virtio_wdt_set_pretimeout,
	.get_timeleft = virtio_wdt_get_timeleft,
};

/*
 * Baseline: heartbeats only. The device cannot be stopped (§6.1), so there is no stop operation;
 * the core then keeps a started watchdog alive itself after a magic close (WDOG_HW_RUNNING,
 * max_hw_heartbeat_ms), and with nowayout it is never stopped at all.
 */
static const struct watchdog_ops virtio_wdt_baseline_ops = {
	.owner = THIS_MODULE,
	.start = virtio_wdt_start,
	.ping = virtio_wdt_ping,
	.get_timeleft = virtio_wdt_get_timeleft,
};

static ssize_t boot_reason_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	struct watchdog_device *wdd = dev_get_drvdata(dev);
	struct virtio_wdt *vw = watchdog_get_drvdata(wdd);

	/* WDT-DRV-15: not interpreted unless the device offers the field. */
	if (!virtio_wdt_has(vw, VIRTIO_WDT_F_BOOT_REASON))
		return sysfs_emit(buf, "unsupported\n");
	return sysfs_emit(buf, "%s\n", virtio_wdt_boot_reason_name(READ_ONCE(vw->boot_reason)));
}
static DEVICE_ATTR_RO(boot_reason);

static struct attribute *virtio_wdt_attrs[] = {
	&dev_attr_boot_reason.attr,
	NULL,
};
ATTRIBUTE_GROUPS(virtio_wdt);

/* ---- per-CPU heartbeats (VCPU_STALL, §6.12) ---- */

/*
 * One write of vcpu_heartbeat for this CPU (WDT-DRV-18): its index, a sequence different from
 * its previous write (1..32767, never 0, so the value is never 0 and never repeats twice in a
 * row), and PET or OFFLINE. Runs on that CPU only. One 4-byte config->set(), no lock, no
 * allocation: virtio_cwrite_le() is the same write but might_sleep(), and this runs in the
 * hrtimer's hard interrupt context.
 */
static void virtio_wdt_vcpu_write(struct virtio_wdt_vcpu *vc, u32 command)
{
	struct virtio_device *vdev = vc->vw->vdev;
	__le32 value;

	vc->sequence = vc->sequence >= VIRTIO_WDT_VCPU_SEQ_MAX ? 1 : vc->sequence + 1;
	value = cpu_to_le32(command | (u32)vc->sequence << VIRTIO_WDT_VCPU_SEQ_SHIFT | vc->index);
	vdev->config->set(vdev, offsetof(struct virtio_wdt_config, vcpu_heartbeat),
			  &value, sizeof(value));
}

/* The pinned per-CPU timer: a PET every vcpu_timeout_ms / 4, also on an idle CPU (WDT-DRV-19). */
static enum hrtimer_restart virtio_wdt_vcpu_timer(struct hrtimer *timer)
{
	struct virtio_wdt_vcpu *vc = container_of(timer, struct virtio_wdt_vcpu, timer);

	if (READ_ONCE(vc->vw->vcpu_stopping)) {
		vc->petting = false;
		virtio_wdt_vcpu_write(vc, VIRTIO_WDT_VCPU_OFFLINE);
		return HRTIMER_NORESTART;
	}
	virtio_wdt_vcpu_write(vc, 0);
	hrtimer_forward_now(timer, vc->vw->vcpu_period);
	return HRTIMER_RESTART;
}

/* Hotplug online (on that CPU; also for every online CPU when the instance is added). */
static int virtio_wdt_cpu_online(unsigned int cpu, struct hlist_node *node)
{
	struct virtio_wdt *vw = hlist_entry(node, struct virtio_wdt, cpuhp_node);
	struct virtio_wdt_vcpu *vc = per_cpu_ptr(vw->vcpus, cpu);

	if (cpu >= vw->vcpu_count) {
		/* WDT-DRV-18: no index the device does not track. Never fail a CPU's bring-up. */
		dev_warn(&vw->vdev->dev, "CPU %u is beyond the device's %u vCPU slots: not watched\n",
			 cpu, vw->vcpu_count);
		return 0;
	}
	virtio_wdt_vcpu_write(vc, 0);	/* PET: tracked from now */
	vc->petting = true;
	hrtimer_start(&vc->timer, vw->vcpu_period, HRTIMER_MODE_REL_PINNED);
	return 0;
}

/*
 * Hotplug offline (on that CPU, before it goes; also for every online CPU when the instance is
 * removed): the timer is cancelled first, so OFFLINE is this CPU's last write (WDT-DRV-19).
 */
static int virtio_wdt_cpu_offline(unsigned int cpu, struct hlist_node *node)
{
	struct virtio_wdt *vw = hlist_entry(node, struct virtio_wdt, cpuhp_node);
	struct virtio_wdt_vcpu *vc = per_cpu_ptr(vw->vcpus, cpu);

	if (!vc->petting)
		return 0;
	hrtimer_cancel(&vc->timer);
	vc->petting = false;
	virtio_wdt_vcpu_write(vc, VIRTIO_WDT_VCPU_OFFLINE);
	return 0;
}

/*
 * Stage one's panic is about to start on this CPU (a noticeq callback: hard interrupt, local
 * interrupts off, so this CPU's timer cannot run meanwhile). panic() keeps interrupts off here
 * while smp_send_stop() waits for the stalled CPU, so this CPU stops petting: say OFFLINE for it,
 * or the device would report the panicking CPU too before the panic record arrives. The stalled
 * CPU stays STALLED, so the host's stage two still acts if the panic never reports.
 */
static void virtio_wdt_vcpu_panicking(struct virtio_wdt *vw)
{
	struct virtio_wdt_vcpu *vc = this_cpu_ptr(vw->vcpus);

	if (!vc->petting)
		return;
	hrtimer_try_to_cancel(&vc->timer);
	vc->petting = false;
	virtio_wdt_vcpu_write(vc, VIRTIO_WDT_VCPU_OFFLINE);
}

/* After DRIVER_OK and the notice buffers (§5): every online CPU pets, and each one that comes online. */
static void virtio_wdt_start_vcpus(struct virtio_wdt *vw)
{
	int err = 0;

	if (!vw->vcpu_count)
		return;
	mutex_lock(&vw->vcpu_lock);
	WRITE_ONCE(vw->vcpu_stopping, false);
	if (!vw->vcpu_started) {
		err = cpuhp_state_add_instance(virtio_wdt_cpuhp_state, &vw->cpuhp_node);
		vw->vcpu_started = !err;
	}
	mutex_unlock(&vw->vcpu_lock);
	if (err)
		dev_err(&vw->vdev->dev, "per-CPU heartbeats not started: %d\n", err);
}

/*
 * When this returns, no per-CPU timer is armed or running and every CPU that petted has written
 * OFFLINE (the offline callback on each online CPU; CPUs that went offline wrote it then). Called
 * before the device is reset or its queues deleted. It waits for every online CPU's hotplug
 * thread, so the reboot notifier, which must not hang on a hard-locked CPU, uses
 * vw->vcpu_stopping instead.
 */
static void virtio_wdt_stop_vcpus(struct virtio_wdt *vw)
{
	mutex_lock(&vw->vcpu_lock);
	if (vw->vcpu_started)
		cpuhp_state_remove_instance(virtio_wdt_cpuhp_state, &vw->cpuhp_node);
	vw->vcpu_started = false;
	mutex_unlock(&vw->vcpu_lock);
}

/* ---- eventq: records posted ahead, committed by reporters ---- */

/* Makes a record buffer available (event_vq_lock held). */
static int virtio_wdt_post_record(struct virtio_wdt *vw, struct virtio_wdt_slot *slot)
{
	struct scatterlist record_sg, status_sg, *sgs[] = { &record_sg, &status_sg };
	int err;

	/* WDT-DRV-8: not committed, status PENDING, before the device can see the buffer. */
	WRITE_ONCE(slot->record->state, 0);
	memset(slot->status, 0, sizeof(*slot->status));
	sg_init_one(&record_sg, slot->record, vw->record_size);
	sg_init_one(&status_sg, slot->status, sizeof(*slot->status));
	err = virtqueue_add_sgs(vw->event_vq, sgs, 1, 1, slot, GFP_ATOMIC);
	if (err) {
		atomic_set(&slot->state, VIRTIO_WDT_SLOT_IDLE);
		return err;
	}
	WRITE_ONCE(slot->posted, vw->posted_count++);
	atomic_set_release(&slot->state, VIRTIO_WDT_SLOT_POSTED);
	return 0;
}

/* Posts every idle (or returned and no longer watched) record buffer. */
static void virtio_wdt_post_records(struct virtio_wdt *vw)
{
	unsigned long flags;
	bool posted = false;
	int i, state;

	spin_lock_irqsave(&vw->event_vq_lock, flags);
	if (!READ_ONCE(vw->ready) || !vw->event_vq)
		goto out;
	for (i = 0; i < VIRTIO_WDT_RECORDS; i++) {
		struct virtio_wdt_slot *slot = &vw->slots[i];

		state = atomic_read(&slot->state);
		if (state == VIRTIO_WDT_SLOT_IDLE ||
		    (state == VIRTIO_WDT_SLOT_USED && !atomic_read(&slot->busy)))
			posted |= !virtio_wdt_post_record(vw, slot);
	}
	if (posted)
		virtqueue_kick(vw->event_vq);
out:
	spin_unlock_irqrestore(&vw->event_vq_lock, flags);
}

static void virtio_wdt_repost_work(struct work_struct *work)
{
	virtio_wdt_post_records(container_of(work, struct virtio_wdt, repost_work));
}

static void virtio_wdt_event_done(struct virtqueue *vq)
{
	struct virtio_wdt *vw = vq->vdev->priv;
	struct virtio_wdt_slot *slot;
	unsigned long flags;
	unsigned int len;
	u8 status;

	spin_lock_irqsave(&vw->event_vq_lock, flags);
	while ((slot = virtqueue_get_buf(vq, &len))) {
		status = READ_ONCE(slot->status->status);
		if (status != VIRTIO_WDT_RS_ACCEPTED)
			dev_warn_ratelimited(&vw->vdev->dev, "record %u returned with status %u\n",
					     le32_to_cpu(slot->record->sequence), status);
		/* The status stays in place for a reporter that is still polling it. */
		atomic_set(&slot->state, VIRTIO_WDT_SLOT_USED);
	}
	spin_unlock_irqrestore(&vw->event_vq_lock, flags);
	schedule_work(&vw->repost_work);
}

/*
 * Takes the oldest posted, uncommitted record buffer (WDT-DRV-10). Lock-free: the panic path
 * must not wait for a lock another CPU may hold forever.
 */
static struct virtio_wdt_slot *virtio_wdt_claim_record(struct virtio_wdt *vw)
{
	struct virtio_wdt_slot *oldest;
	int attempt, i;

	for (attempt = 0; attempt < VIRTIO_WDT_RECORDS; attempt++) {
		oldest = NULL;
		for (i = 0; i < VIRTIO_WDT_RECORDS; i++) {
			struct virtio_wdt_slot *slot = &vw->slots[i];

			if (atomic_read_acquire(&slot->state) != VIRTIO_WDT_SLOT_POSTED)
				continue;
			if (!oldest || (s32)(READ_ONCE(slot->posted) - READ_ONCE(oldest->posted)) < 0)
				oldest = slot;
		}
		if (!oldest)
			return NULL;
		if (atomic_cmpxchg(&oldest->state, VIRTIO_WDT_SLOT_POSTED,
				   VIRTIO_WDT_SLOT_CLAIMED) == VIRTIO_WDT_SLOT_POSTED) {
			atomic_set(&oldest->busy, 1);
			return oldest;
		}
	}
	return NULL;
}

/* The newest kernel log lines that fit, oldest first, read without locks (safe in panic). */
static size_t virtio_wdt_read_log_tail(char *buf, size_t size)
{
	struct kmsg_dump_iter iter;
	size_t len = 0;

	kmsg_dump_rewind(&iter);
	if (!kmsg_dump_get_buffer(&iter, false, buf, size, &len))
		return 0;
	return min(len, size);
}

/*
 * Fills a claimed record and commits it (§6.5.2, WDT-DRV-9, WDT-DRV-11): every field first,
 * then state = COMMITTED after a write barrier, then a notification that ignores suppression.
 */
static void virtio_wdt_commit_record(struct virtio_wdt *vw, struct virtio_wdt_slot *slot,
				     u16 type, const char *message, u64 code)
{
	struct virtio_wdt_record *rec = slot->record;
	size_t message_len = message ? strnlen(message, VIRTIO_WDT_MESSAGE_MAX) : 0;
	size_t tail_len = 0;
	int i;

	while (message_len && message[message_len - 1] == '\n')
		message_len--;

	rec->type = cpu_to_le16(type);
	rec->code_format = VIRTIO_WDT_CODES_GENERIC;
	rec->code_count = code ? 1 : 0;
	rec->sequence = cpu_to_le32(atomic_inc_return(&vw->record_sequence));
	rec->vcpu_id = cpu_to_le32(raw_smp_processor_id());
	rec->guest_time_ns = cpu_to_le64(ktime_get_boot_fast_ns());
	for (i = 0; i < VIRTIO_WDT_CODES_MAX; i++)
		rec->codes[i] = 0;
	rec->codes[0] = cpu_to_le64(code);
	rec->reserved0 = 0;
	rec->reserved1 = 0;
	memcpy(rec->data, message, message_len);
	rec->message_len = cpu_to_le16(message_len);
	if (log_tail && type != VIRTIO_WDT_RECORD_SHUTDOWN &&
	    virtio_wdt_has(vw, VIRTIO_WDT_F_LOG_TAIL))
		tail_len = virtio_wdt_read_log_tail(rec->data + message_len, VIRTIO_WDT_LOG_TAIL_MAX);
	rec->log_tail_len = cpu_to_le32(tail_len);

	/*
	 * Every field above is visible before state says COMMITTED (WDT-DRV-9). Pairs with the
	 * device's acquire load of state before it reads the body (WDT-DEV ordering statement in
	 * spec/virtio-watchdog.md; EventQueueWorker in the C# device): a device that sees
	 * COMMITTED sees this record's fields, never a stale body. wmb() rather than virt_wmb():
	 * the device may be a vhost-user process or real hardware, not only another CPU.
	 */
	wmb();
	WRITE_ONCE(rec->state, cpu_to_le32(VIRTIO_WDT_RECORD_COMMITTED));
	virtqueue_notify(vw->event_vq);
}

/* Polls the record's status for a bounded time (WDT-DRV-13); no interrupt needed. */
static u8 virtio_wdt_await_record(struct virtio_wdt_slot *slot, bool can_sleep)
{
	unsigned int waited;
	u8 status;

	for (waited = 0;; waited++) {
		status = READ_ONCE(slot->status->status);
		if (status != VIRTIO_WDT_RS_PENDING || waited >= panic_wait_ms)
			return status;
		if (can_sleep)
			usleep_range(1000, 1100);
		else
			mdelay(1);
	}
}

/* panic_events (§6.6): a register write, safe with interrupts off (config->set, not cwrite). */
static void virtio_wdt_write_panic_events(struct virtio_wdt *vw, u32 bit)
{
	__le32 value = cpu_to_le32(bit);

	vw->vdev->config->set(vw->vdev, offsetof(struct virtio_wdt_config, panic_events),
			      &value, sizeof(value));
}

/*
 * Reports a panic, crash-loaded or shutdown event: a record when eventq is live and a buffer is
 * free, otherwise (or when the record is not acknowledged in time) panic_events. With
 * can_sleep false this is the panic path: memory writes, one notification, a bounded poll.
 */
static void virtio_wdt_report(struct virtio_wdt *vw, u16 type, const char *message, u64 code,
			      bool can_sleep)
{
	static const u32 bits[] = {
		[VIRTIO_WDT_RECORD_PANIC] = VIRTIO_WDT_PANIC_PANICKED,
		[VIRTIO_WDT_RECORD_CRASH_LOADED] = VIRTIO_WDT_PANIC_CRASH_LOADED,
		[VIRTIO_WDT_RECORD_SHUTDOWN] = VIRTIO_WDT_PANIC_SHUTDOWN,
	};
	struct virtio_wdt_slot *slot = NULL;
	u8 status = VIRTIO_WDT_RS_PENDING;
	u32 sequence = 0;

	if (virtio_wdt_has(vw, VIRTIO_WDT_F_EVENTS) && READ_ONCE(vw->ready))
		slot = virtio_wdt_claim_record(vw);
	if (slot) {
		virtio_wdt_commit_record(vw, slot, type, message, code);
		sequence = le32_to_cpu(slot->record->sequence);
		status = virtio_wdt_await_record(slot, can_sleep);
		atomic_set(&slot->busy, 0);
		if (can_sleep)
			schedule_work(&vw->repost_work);
		if (status == VIRTIO_WDT_RS_ACCEPTED) {
			dev_info(&vw->vdev->dev, "%s reported in record %u, host event %u\n",
				 virtio_wdt_record_name(type), sequence,
				 le32_to_cpu(READ_ONCE(slot->status->host_sequence)));
			return;
		}
	}

	/* WDT-DRV-12: only supported bits, one per write. */
	if (vw->panic_events & bits[type]) {
		virtio_wdt_write_panic_events(vw, bits[type]);
		dev_info(&vw->vdev->dev, "%s reported through panic_events%s\n",
			 virtio_wdt_record_name(type),
			 slot ? " (record not acknowledged)" : "");
		return;
	}
	if (slot)
		dev_warn(&vw->vdev->dev, "%s record %u not acknowledged (status %u)\n",
			 virtio_wdt_record_name(type), sequence, status);
}

static int virtio_wdt_panic_notify(struct notifier_block *nb, unsigned long code, void *data)
{
	struct virtio_wdt *vw = container_of(nb, struct virtio_wdt, panic_nb);
	/*
	 * WDT-DRV-14: CRASH_LOADED when a crash kernel takes over. It runs after the panic
	 * notifiers only with crash_kexec_post_notifiers; otherwise they never run at all.
	 */
	u16 type = kexec_crash_loaded() ? VIRTIO_WDT_RECORD_CRASH_LOADED : VIRTIO_WDT_RECORD_PANIC;

	if (!atomic_xchg(&vw->panic_reported, 1))
		virtio_wdt_report(vw, type, data, 0, false);
	return NOTIFY_DONE;
}

static int virtio_wdt_reboot_notify(struct notifier_block *nb, unsigned long action, void *data)
{
	struct virtio_wdt *vw = container_of(nb, struct virtio_wdt, reboot_nb);
	const char *what;

	switch (action) {
	case SYS_RESTART:
		what = "restart";
		break;
	case SYS_HALT:
		what = "halt";
		break;
	case SYS_POWER_OFF:
		what = "power off";
		break;
	default:
		return NOTIFY_DONE;
	}
	/* codes[0] (GENERIC) is the reboot action: 1 restart, 2 halt, 3 power off. */
	if (!atomic_xchg(&vw->shutdown_reported, 1))
		virtio_wdt_report(vw, VIRTIO_WDT_RECORD_SHUTDOWN, what, action, true);
	/*
	 * The CPUs are about to be stopped without hotplug: each running CPU says OFFLINE from its
	 * own timer within a period, without this thread waiting for a CPU that may be hard-locked
	 * (which, not petting, is rightly reported).
	 */
	WRITE_ONCE(vw->vcpu_stopping, true);
	return NOTIFY_DONE;
}

/* ---- noticeq: pretimeout and VCPU_STALL notices ---- */

static int virtio_wdt_post_notice(struct virtio_wdt *vw, struct virtio_wdt_notice *notice)
{
	struct scatterlist sg;

	/* WDT-DRV-7: device-writable only, 16 bytes. */
	memset(notice, 0, sizeof(*notice));
	sg_init_one(&sg, notice, sizeof(*notice));
	return virtqueue_add_inbuf(vw->notice_vq, &sg, 1, notice, GFP_ATOMIC);
}

/*
 * A VCPU_STALL notice (§6.12, WDT-DRV-20), logged as it is read (notice_vq_lock held; printk is
 * safe there). Returns true for the first valid one of a batch, which is then copied to *first.
 */
static bool virtio_wdt_vcpu_notice(struct virtio_wdt *vw, const struct virtio_wdt_notice *notice,
				   struct virtio_wdt_notice *first, bool have_first)
{
	u16 vcpu = le16_to_cpu(notice->vcpu);

	if (vcpu >= vw->vcpu_count) {
		dev_warn_ratelimited(&vw->vdev->dev, "stall notice for vCPU %u, beyond %u slots\n",
				     vcpu, vw->vcpu_count);
		return false;
	}
	pr_emerg("vCPU %u stalled for %u ms (timeout %u ms); the host acts in %u ms\n", vcpu,
		 le32_to_cpu(notice->vcpu_stall.stalled_ms),
		 le32_to_cpu(notice->vcpu_stall.timeout_ms),
		 le32_to_cpu(notice->vcpu_stall.stage2_ms));
	if (have_first)
		return false;
	*first = *notice;
	return true;
}

static void virtio_wdt_notice_done(struct virtqueue *vq)
{
	struct virtio_wdt *vw = vq->vdev->priv;
	struct virtio_wdt_notice *notice, stall;
	unsigned long flags;
	unsigned int len;
	bool fired = false, stalled = false;

	spin_lock_irqsave(&vw->notice_vq_lock, flags);
	while ((notice = virtqueue_get_buf(vq, &len))) {
		if (len < sizeof(*notice))
			goto repost;
		switch (le16_to_cpu(notice->type)) {
		case VIRTIO_WDT_NOTICE_PRETIMEOUT:
			fired |= virtio_wdt_has(vw, VIRTIO_WDT_F_PRETIMEOUT);
			break;
		case VIRTIO_WDT_NOTICE_VCPU_STALL:
			if (vw->vcpu_count)
				stalled |= virtio_wdt_vcpu_notice(vw, notice, &stall, stalled);
			break;
		}
repost:
		virtio_wdt_post_notice(vw, notice);
	}
	virtqueue_kick(vq);
	spin_unlock_irqrestore(&vw->notice_vq_lock, flags);
	if (fired)
		watchdog_notify_pretimeout(&vw->wdd);
	/* Stage one (§6.12): the guest's chance to panic before the host's stage two acts. */
	if (stalled && vcpu_stall_panic) {
		virtio_wdt_vcpu_panicking(vw);
		panic("virtio_wdt: vCPU %u stalled for %u ms", le16_to_cpu(stall.vcpu),
		      le32_to_cpu(stall.vcpu_stall.stalled_ms));
	}
}

/* ---- configuration ---- */

static void virtio_wdt_config_work(struct work_struct *work)
{
	struct virtio_wdt *vw = container_of(work, struct virtio_wdt, config_work);
	u32 reason;

	if (!virtio_wdt_has(vw, VIRTIO_WDT_F_BOOT_REASON))
		return;
	/* The host set boot_reason for the next boot (§6.7); nothing to do now but say so. */
	virtio_cread_le(vw->vdev, struct virtio_wdt_config, boot_reason, &reason);
	if (reason != READ_ONCE(vw->boot_reason))
		dev_info(&vw->vdev->dev, "host set boot_reason to %s\n",
			 virtio_wdt_boot_reason_name(reason));
}

static void virtio_wdt_config_changed(struct virtio_device *vdev)
{
	struct virtio_wdt *vw = vdev->priv;

	if (READ_ONCE(vw->ready))
		schedule_work(&vw->config_work);
}

static int virtio_wdt_read_config(struct virtio_wdt *vw)
{
	struct virtio_device *vdev = vw->vdev;
	u32 value;

	/* §5 step 1 */
	virtio_cread_le(vdev, struct virtio_wdt_config, default_timeout_ms, &vw->default_timeout_ms);
	if (!vw->default_timeout_ms) {
		dev_err(&vdev->dev, "default_timeout_ms is 0\n");
		return -EINVAL;
	}
	vw->min_timeout_ms = vw->default_timeout_ms;
	vw->max_timeout_ms = vw->default_timeout_ms;
	if (virtio_wdt_has(vw, VIRTIO_WDT_F_CONTROL)) {
		virtio_cread_le(vdev, struct virtio_wdt_config, min_timeout_ms, &vw->min_timeout_ms);
		virtio_cread_le(vdev, struct virtio_wdt_config, max_timeout_ms, &vw->max_timeout_ms);
		if (!vw->min_timeout_ms || vw->min_timeout_ms > vw->default_timeout_ms ||
		    vw->default_timeout_ms > vw->max_timeout_ms) {
			dev_err(&vdev->dev, "inconsistent timeouts: min %u, default %u, max %u ms\n",
				vw->min_timeout_ms, vw->default_timeout_ms, vw->max_timeout_ms);
			return -EINVAL;
		}
	}

	/* WDT-DRV-12: read the supported bits first; only those are ever written. */
	if (virtio_wdt_has(vw, VIRTIO_WDT_F_PANIC_CONFIG)) {
		virtio_cread_le(vdev, struct virtio_wdt_config, panic_events, &value);
		vw->panic_events = value & VIRTIO_WDT_PANIC_EVENTS_ALL;
	}

	/* §4: per-CPU heartbeats; a device with unusable values keeps everything else working. */
	if (virtio_wdt_has(vw, VIRTIO_WDT_F_VCPU_STALL)) {
		virtio_cread_le(vdev, struct virtio_wdt_config, vcpu_count, &vw->vcpu_count);
		virtio_cread_le(vdev, struct virtio_wdt_config, vcpu_timeout_ms, &vw->vcpu_timeout_ms);
		virtio_cread_le(vdev, struct virtio_wdt_config, vcpu_stage2_ms, &vw->vcpu_stage2_ms);
		if (!vw->vcpu_count || vw->vcpu_count > VIRTIO_WDT_VCPU_MAX ||
		    vw->vcpu_timeout_ms < VIRTIO_WDT_VCPU_MIN_TIMEOUT_MS || !vw->vcpu_stage2_ms) {
			dev_err(&vdev->dev, "per-CPU heartbeats off: vcpu_count %u, vcpu_timeout_ms %u, vcpu_stage2_ms %u\n",
				vw->vcpu_count, vw->vcpu_timeout_ms, vw->vcpu_stage2_ms);
			vw->vcpu_count = 0;
		} else if (nr_cpu_ids > vw->vcpu_count) {
			dev_warn(&vdev->dev, "%u possible CPUs, the device tracks %u\n",
				 nr_cpu_ids, vw->vcpu_count);
		}
		/* WDT-DRV-19: four pets per timeout, at least two even if one is late. */
		vw->vcpu_period = ms_to_ktime(vw->vcpu_timeout_ms / 4);
	}

	/* §5 step 2, WDT-DRV-15: read before clearing, and clear only by writing 0. */
	if (virtio_wdt_has(vw, VIRTIO_WDT_F_BOOT_REASON)) {
		virtio_cread_le(vdev, struct virtio_wdt_config, boot_reason, &vw->boot_reason);
		if (vw->boot_reason != VIRTIO_WDT_BOOT_NONE && clear_boot_reason) {
			value = 0;
			virtio_cwrite_le(vdev, struct virtio_wdt_config, boot_reason, &value);
		}
	}
	return 0;
}

/* ---- queues and buffers ---- */

static int virtio_wdt_find_vqs(struct virtio_wdt *vw)
{
	vq_callback_t *callbacks[] = {
		virtio_wdt_watchdog_done, virtio_wdt_event_done, virtio_wdt_notice_done,
	};
	static const char * const names[] = { "watchdog", "event", "notice" };
	struct virtqueue *vqs[3];
	unsigned int nvqs = 1;
	int err;

	/*
	 * Queues are numbered by position, and Linux skips a NULL-named queue without keeping its
	 * index: with PRETIMEOUT or VCPU_STALL but not EVENTS, eventq is set up too (and never used)
	 * so that noticeq is queue 2.
	 */
	if (virtio_wdt_has(vw, VIRTIO_WDT_F_EVENTS))
		nvqs = 2;
	if (virtio_wdt_has_notices(vw))
		nvqs = 3;
	err = virtio_find_vqs(vw->vdev, nvqs, vqs, callbacks, names, NULL);
	if (err) {
		dev_err(&vw->vdev->dev, "cannot set up %u queues: %d\n", nvqs, err);
		return err;
	}
	vw->watchdog_vq = vqs[0];
	vw->event_vq = virtio_wdt_has(vw, VIRTIO_WDT_F_EVENTS) ? vqs[1] : NULL;
	vw->notice_vq = virtio_wdt_has_notices(vw) ? vqs[2] : NULL;
	return 0;
}

/* §5 step 5: records and notice buffers are posted once the queues are live. */
static void virtio_wdt_post_buffers(struct virtio_wdt *vw)
{
	unsigned long flags;
	int i, err = 0;

	virtio_wdt_post_records(vw);
	if (!vw->notice_vq)
		return;
	spin_lock_irqsave(&vw->notice_vq_lock, flags);
	for (i = 0; i < VIRTIO_WDT_NOTICES && !err; i++)
		err = virtio_wdt_post_notice(vw, &vw->notices[i]);
	virtqueue_kick(vw->notice_vq);
	spin_unlock_irqrestore(&vw->notice_vq_lock, flags);
}

static void virtio_wdt_free_buffers(struct virtio_wdt *vw)
{
	int i;

	for (i = 0; i < VIRTIO_WDT_RECORDS; i++)
		kfree(vw->slots[i].record);
	free_percpu(vw->vcpus);
	kfree(vw->notices);
	kfree(vw->resp);
	kfree(vw->req);
	kfree(vw->heartbeat);
}

static int virtio_wdt_alloc_buffers(struct virtio_wdt *vw)
{
	size_t status_offset;
	unsigned int cpu;
	int i;

	vw->heartbeat = kzalloc(VIRTIO_WDT_HEARTBEAT_LEN, GFP_KERNEL);
	vw->req = kzalloc(sizeof(*vw->req), GFP_KERNEL);
	vw->resp = kzalloc(sizeof(*vw->resp), GFP_KERNEL);
	if (!vw->heartbeat || !vw->req || !vw->resp)
		return -ENOMEM;

	if (virtio_wdt_has_notices(vw)) {
		vw->notices = kcalloc(VIRTIO_WDT_NOTICES, sizeof(*vw->notices), GFP_KERNEL);
		if (!vw->notices)
			return -ENOMEM;
	}

	/* Every possible CPU's timer is initialised once, so cancelling any of them is safe. */
	if (vw->vcpu_count) {
		vw->vcpus = alloc_percpu(struct virtio_wdt_vcpu);
		if (!vw->vcpus)
			return -ENOMEM;
		for_each_possible_cpu(cpu) {
			struct virtio_wdt_vcpu *vc = per_cpu_ptr(vw->vcpus, cpu);

			vc->vw = vw;
			vc->index = cpu;
			hrtimer_init(&vc->timer, CLOCK_MONOTONIC, HRTIMER_MODE_REL_PINNED);
			vc->timer.function = virtio_wdt_vcpu_timer;
		}
	}

	if (!virtio_wdt_has(vw, VIRTIO_WDT_F_EVENTS))
		return 0;
	/* Sized for the maxima once (§6.5.1): header, message, log tail. */
	vw->record_size = sizeof(struct virtio_wdt_record) + VIRTIO_WDT_MESSAGE_MAX;
	if (virtio_wdt_has(vw, VIRTIO_WDT_F_LOG_TAIL))
		vw->record_size += VIRTIO_WDT_LOG_TAIL_MAX;
	/* One spare byte: kmsg_dump_get_buffer() may NUL-terminate what it wrote. */
	status_offset = ALIGN(vw->record_size + 1, 8);
	for (i = 0; i < VIRTIO_WDT_RECORDS; i++) {
		struct virtio_wdt_slot *slot = &vw->slots[i];
		u8 *buffer = kzalloc(status_offset + sizeof(*slot->status), GFP_KERNEL);

		if (!buffer)
			return -ENOMEM;
		slot->record = (struct virtio_wdt_record *)buffer;
		slot->status = (struct virtio_wdt_record_status *)(buffer + status_offset);
	}
	return 0;
}

static int virtio_wdt_start_queues(struct virtio_wdt *vw)
{
	int err;

	err = virtio_wdt_find_vqs(vw);
	if (err)
		return err;
	virtio_device_ready(vw->vdev);
	mutex_lock(&vw->request_lock);
	WRITE_ONCE(vw->ready, true);
	mutex_unlock(&vw->request_lock);
	virtio_wdt_post_buffers(vw);
	virtio_wdt_start_vcpus(vw);	/* notice buffers are posted: a stall can be told */
	return 0;
}

/* Quiesces the device: no new reports or requests, device reset, queues deleted. */
static void virtio_wdt_stop_queues(struct virtio_wdt *vw)
{
	int i;

	/* Every per-CPU timer cancelled, OFFLINE written, before the reset and del_vqs(). */
	virtio_wdt_stop_vcpus(vw);
	mutex_lock(&vw->request_lock);
	WRITE_ONCE(vw->ready, false);
	mutex_unlock(&vw->request_lock);
	/* A panic notifier that already saw ready runs under rcu_read_lock(): let it finish. */
	synchronize_rcu();
	cancel_work_sync(&vw->config_work);
	virtio_reset_device(vw->vdev);
	cancel_work_sync(&vw->repost_work);
	vw->vdev->config->del_vqs(vw->vdev);
	vw->watchdog_vq = NULL;
	vw->event_vq = NULL;
	vw->notice_vq = NULL;
	vw->request_in_flight = false;
	vw->armed = false;		/* the reset disarmed a baseline watchdog */
	for (i = 0; i < VIRTIO_WDT_RECORDS; i++) {
		atomic_set(&vw->slots[i].state, VIRTIO_WDT_SLOT_IDLE);
		atomic_set(&vw->slots[i].busy, 0);
	}
}

/* ---- watchdog registration ---- */

static int virtio_wdt_setup_watchdog(struct virtio_wdt *vw)
{
	struct watchdog_device *wdd = &vw->wdd;
	struct device *dev = &vw->vdev->dev;
	struct virtio_wdt_ctrl_resp resp;
	u16 flags;
	int err;

	strscpy(vw->info.identity, "virtio watchdog", sizeof(vw->info.identity));
	vw->info.options = WDIOF_KEEPALIVEPING | WDIOF_MAGICCLOSE;
	if (virtio_wdt_has(vw, VIRTIO_WDT_F_BOOT_REASON))
		vw->info.options |= WDIOF_CARDRESET;
	wdd->info = &vw->info;
	wdd->parent = dev;
	wdd->groups = virtio_wdt_groups;
	watchdog_set_drvdata(wdd, vw);

	if (virtio_wdt_has(vw, VIRTIO_WDT_F_CONTROL)) {
		wdd->ops = &virtio_wdt_control_ops;
		vw->info.options |= WDIOF_SETTIMEOUT;
		if (virtio_wdt_has(vw, VIRTIO_WDT_F_PRETIMEOUT))
			vw->info.options |= WDIOF_PRETIMEOUT;
		/* Seconds within the device's bounds: minimum rounded up, maximum down. */
		wdd->min_timeout = DIV_ROUND_UP(vw->min_timeout_ms, 1000);
		wdd->max_timeout = vw->max_timeout_ms / 1000;
		if (wdd->min_timeout > wdd->max_timeout) {
			dev_err(dev, "no whole-second timeout between %u and %u ms\n",
				vw->min_timeout_ms, vw->max_timeout_ms);
			return -EINVAL;
		}
		wdd->timeout = clamp_t(unsigned int, vw->default_timeout_ms / 1000,
				       max(wdd->min_timeout, 1u),
				       wdd->max_timeout ? wdd->max_timeout : UINT_MAX / 1000);
		watchdog_init_timeout(wdd, timeout, dev);

		/* WDT-DRV-16: a watchdog still armed (NOWAYOUT across a reset) is kept alive. */
		mutex_lock(&vw->request_lock);
		err = virtio_wdt_control(vw, VIRTIO_WDT_CMD_GET_STATUS, 0, &resp);
		mutex_unlock(&vw->request_lock);
		if (err)
			return err;
		flags = le16_to_cpu(resp.flags);
		if (flags & VIRTIO_WDT_FLAG_ARMED) {
			wdd->timeout = max(le32_to_cpu(resp.timeout_ms) / 1000, 1u);
			set_bit(WDOG_HW_RUNNING, &wdd->status);
			dev_info(dev, "watchdog found running (%u s left): keeping it alive\n",
				 le32_to_cpu(resp.time_left_ms) / 1000);
		}
		if (flags & VIRTIO_WDT_FLAG_NOWAYOUT)
			watchdog_set_nowayout(wdd, true);
		if (virtio_wdt_has(vw, VIRTIO_WDT_F_PRETIMEOUT))
			wdd->pretimeout = le32_to_cpu(resp.pretimeout_ms) / 1000;
	} else {
		/* Baseline: the device's timeout only, rounded down so pings come in time. */
		wdd->ops = &virtio_wdt_baseline_ops;
		wdd->timeout = max(vw->default_timeout_ms / 1000, 1u);
		wdd->min_timeout = wdd->timeout;
		wdd->max_timeout = wdd->timeout;
		wdd->max_hw_heartbeat_ms = vw->default_timeout_ms;
	}

	watchdog_set_nowayout(wdd, nowayout);
	watchdog_stop_on_unregister(wdd);
	watchdog_stop_ping_on_suspend(wdd);
	if (virtio_wdt_has(vw, VIRTIO_WDT_F_BOOT_REASON) &&
	    vw->boot_reason == VIRTIO_WDT_BOOT_WATCHDOG)
		wdd->bootstatus = WDIOF_CARDRESET;
	return watchdog_register_device(wdd);
}

/* ---- virtio driver ---- */

static int virtio_wdt_validate(struct virtio_device *vdev)
{
	if (!events)
		__virtio_clear_bit(vdev, VIRTIO_WDT_F_EVENTS);
	/*
	 * User-Mode Linux's virtio_uml sends each configuration write as a vhost-user message it
	 * allocates (GFP_KERNEL) and waits for: not something an hrtimer may do. It has one CPU.
	 */
	if (IS_ENABLED(CONFIG_UML))
		__virtio_clear_bit(vdev, VIRTIO_WDT_F_VCPU_STALL);
	/* WDT-DRV-1 */
	if (!virtio_has_feature(vdev, VIRTIO_WDT_F_CONTROL))
		__virtio_clear_bit(vdev, VIRTIO_WDT_F_PRETIMEOUT);
	if (!virtio_has_feature(vdev, VIRTIO_WDT_F_EVENTS))
		__virtio_clear_bit(vdev, VIRTIO_WDT_F_LOG_TAIL);
	return 0;
}

static int virtio_wdt_probe(struct virtio_device *vdev)
{
	struct virtio_wdt *vw;
	int err;

	if (!vdev->config->get || !vdev->config->set) {
		dev_err(&vdev->dev, "configuration space access is missing\n");
		return -EINVAL;
	}

	vw = kzalloc(sizeof(*vw), GFP_KERNEL);
	if (!vw)
		return -ENOMEM;
	vw->vdev = vdev;
	vdev->priv = vw;
	vw->features = vdev->features;
	mutex_init(&vw->request_lock);
	mutex_init(&vw->vcpu_lock);
	spin_lock_init(&vw->watchdog_vq_lock);
	spin_lock_init(&vw->event_vq_lock);
	spin_lock_init(&vw->notice_vq_lock);
	init_completion(&vw->request_done);
	INIT_WORK(&vw->repost_work, virtio_wdt_repost_work);
	INIT_WORK(&vw->config_work, virtio_wdt_config_work);
	vw->panic_nb.notifier_call = virtio_wdt_panic_notify;
	vw->panic_nb.priority = INT_MAX;	/* report before notifiers that may not return */
	vw->reboot_nb.notifier_call = virtio_wdt_reboot_notify;

	err = virtio_wdt_read_config(vw);
	if (err)
		goto err_free;
	err = virtio_wdt_alloc_buffers(vw);
	if (err)
		goto err_free;
	err = virtio_wdt_start_queues(vw);
	if (err)
		goto err_free;
	err = virtio_wdt_setup_watchdog(vw);
	if (err)
		goto err_queues;

	atomic_notifier_chain_register(&panic_notifier_list, &vw->panic_nb);
	err = register_reboot_notifier(&vw->reboot_nb);
	if (err)
		goto err_watchdog;

	dev_info(&vdev->dev, "watchdog%d: features 0x%llx, timeout %u s (%s), %s%s, boot reason %s\n",
		 vw->wdd.id, vw->features & GENMASK_ULL(23, 0), vw->wdd.timeout,
		 virtio_wdt_has(vw, VIRTIO_WDT_F_CONTROL) ? "control requests" : "baseline heartbeats",
		 virtio_wdt_has(vw, VIRTIO_WDT_F_EVENTS) ? "event records" : "no event records",
		 vw->panic_events ? ", panic_events" : "",
		 virtio_wdt_has(vw, VIRTIO_WDT_F_BOOT_REASON) ?
		 virtio_wdt_boot_reason_name(vw->boot_reason) : "unsupported");
	if (vw->vcpu_count)
		dev_info(&vdev->dev, "per-CPU heartbeats: %u vCPU slots, stall after %u ms, pet every %u ms\n",
			 vw->vcpu_count, vw->vcpu_timeout_ms, vw->vcpu_timeout_ms / 4);
	return 0;

err_watchdog:
	atomic_notifier_chain_unregister(&panic_notifier_list, &vw->panic_nb);
	watchdog_unregister_device(&vw->wdd);
err_queues:
	virtio_wdt_stop_queues(vw);
err_free:
	virtio_wdt_free_buffers(vw);
	kfree(vw);
	vdev->priv = NULL;
	return err;
}

static void virtio_wdt_remove(struct virtio_device *vdev)
{
	struct virtio_wdt *vw = vdev->priv;

	unregister_reboot_notifier(&vw->reboot_nb);
	atomic_notifier_chain_unregister(&panic_notifier_list, &vw->panic_nb);
	/* Stops the watchdog unless nowayout (STOP needs the queues, so before they go). */
	watchdog_unregister_device(&vw->wdd);
	virtio_wdt_stop_queues(vw);
	virtio_wdt_free_buffers(vw);
	kfree(vw);
}

#ifdef CONFIG_PM_SLEEP
static int virtio_wdt_freeze(struct virtio_device *vdev)
{
	virtio_wdt_stop_queues(vdev->priv);
	return 0;
}

static int virtio_wdt_restore(struct virtio_device *vdev)
{
	struct virtio_wdt *vw = vdev->priv;
	int err;

	err = virtio_wdt_start_queues(vw);
	if (err)
		return err;
	/* The reset disarmed the device (unless NOWAYOUT kept it): re-arm what the core runs. */
	if (watchdog_active(&vw->wdd) || watchdog_hw_running(&vw->wdd)) {
		mutex_lock(&vw->request_lock);
		err = virtio_wdt_start_locked(vw);
		mutex_unlock(&vw->request_lock);
	}
	return err;
}
#endif

static unsigned int virtio_wdt_features[] = {
	VIRTIO_WDT_F_EVENTS,
	VIRTIO_WDT_F_PANIC_CONFIG,
	VIRTIO_WDT_F_CONTROL,
	VIRTIO_WDT_F_PRETIMEOUT,
	VIRTIO_WDT_F_BOOT_REASON,
	VIRTIO_WDT_F_LOG_TAIL,
	VIRTIO_WDT_F_VCPU_STALL,
};

static const struct virtio_device_id virtio_wdt_id_table[] = {
	{ VIRTIO_ID_WDT, VIRTIO_DEV_ANY_ID },
	{ 0 },
};
MODULE_DEVICE_TABLE(virtio, virtio_wdt_id_table);

static struct virtio_driver virtio_wdt_driver = {
	.feature_table = virtio_wdt_features,
	.feature_table_size = ARRAY_SIZE(virtio_wdt_features),
	.driver.name = KBUILD_MODNAME,
	.driver.owner = THIS_MODULE,
	.id_table = virtio_wdt_id_table,
	.validate = virtio_wdt_validate,
	.probe = virtio_wdt_probe,
	.remove = virtio_wdt_remove,
	.config_changed = virtio_wdt_config_changed,
#ifdef CONFIG_PM_SLEEP
	.freeze = virtio_wdt_freeze,
	.restore = virtio_wdt_restore,
#endif
};

/*
 * One dynamic CPU-hotplug state for the module, with one instance per device that pets
 * (cpuhp_setup_state_multi(), so each callback knows its device). Removed after the driver: by
 * then every device's instance is gone.
 */
static int __init virtio_wdt_init(void)
{
	int err;

	err = cpuhp_setup_state_multi(CPUHP_AP_ONLINE_DYN, "misc/virtio_wdt:online",
				      virtio_wdt_cpu_online, virtio_wdt_cpu_offline);
	if (err < 0)
		return err;
	virtio_wdt_cpuhp_state = err;
	err = register_virtio_driver(&virtio_wdt_driver);
	if (err)
		cpuhp_remove_multi_state(virtio_wdt_cpuhp_state);
	return err;
}
module_init(virtio_wdt_init);

static void __exit virtio_wdt_exit(void)
{
	unregister_virtio_driver(&virtio_wdt_driver);
	cpuhp_remove_multi_state(virtio_wdt_cpuhp_state);
}
module_exit(virtio_wdt_exit);

MODULE_DESCRIPTION("Virtio watchdog and panic device driver (VirtioPanic reference driver)");
MODULE_LICENSE("GPL");
