/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Guest-visible interface of the VirtioPanic watchdog and panic device, virtio device ID 35
 * ("watchdog"), as specified in spec/virtio-watchdog.md of the VirtioPanic repository. Section
 * numbers (§n) refer to that chapter. Every multi-byte field is little-endian.
 */
#ifndef VIRTIO_WDT_H
#define VIRTIO_WDT_H

#include <linux/types.h>

/* §1 Device ID */
#define VIRTIO_ID_WDT			35

/* §2 Virtqueues */
#define VIRTIO_WDT_VQ_WATCHDOG		0	/* heartbeats; with CONTROL also requests */
#define VIRTIO_WDT_VQ_EVENT		1	/* event records (EVENTS) */
#define VIRTIO_WDT_VQ_NOTICE		2	/* notices (PRETIMEOUT or VCPU_STALL) */

/* §3 Feature bits */
#define VIRTIO_WDT_F_EVENTS		0
#define VIRTIO_WDT_F_PANIC_CONFIG	1
#define VIRTIO_WDT_F_CONTROL		2
#define VIRTIO_WDT_F_PRETIMEOUT		3
#define VIRTIO_WDT_F_BOOT_REASON	4
#define VIRTIO_WDT_F_LOG_TAIL		5
#define VIRTIO_WDT_F_VCPU_STALL		6

/* §4 Device configuration layout (20 bytes; 36 when VCPU_STALL is offered) */
struct virtio_wdt_config {
	__le32 boot_reason;		/* R; a write of 0 clears it */
	__le32 default_timeout_ms;	/* R */
	__le32 panic_events;		/* R: supported bits; W: report one event */
	__le32 min_timeout_ms;		/* R, valid with CONTROL */
	__le32 max_timeout_ms;		/* R, valid with CONTROL */
	__le32 vcpu_count;		/* R, valid with VCPU_STALL */
	__le32 vcpu_timeout_ms;		/* R, valid with VCPU_STALL: stage one, that vCPU's run time */
	__le32 vcpu_stage2_ms;		/* R, valid with VCPU_STALL: stage two, VM run time */
	__le32 vcpu_heartbeat;		/* W (reads 0), valid with VCPU_STALL */
};

/* §4 vcpu_heartbeat: one 4-byte write; the whole value is never 0 */
#define VIRTIO_WDT_VCPU_MAX		1024
#define VIRTIO_WDT_VCPU_INDEX_MASK	0xFFFFu		/* bits 0-15 */
#define VIRTIO_WDT_VCPU_SEQ_SHIFT	16		/* bits 16-30: differs from the last write */
#define VIRTIO_WDT_VCPU_SEQ_MAX		0x7FFFu
#define VIRTIO_WDT_VCPU_OFFLINE		0x80000000u	/* bit 31: 0 = PET, 1 = OFFLINE */
#define VIRTIO_WDT_VCPU_MIN_TIMEOUT_MS	1000

#define VIRTIO_WDT_MESSAGE_MAX		1024
#define VIRTIO_WDT_LOG_TAIL_MAX		16384
#define VIRTIO_WDT_CODES_MAX		5
#define VIRTIO_WDT_MAX_POSTED_RECORDS	16
#define VIRTIO_WDT_RECORD_MAX_BUFFERS	8
#define VIRTIO_WDT_RECORD_COMMITTED	0x4D4D4F43u	/* "COMM" in memory */

/* §6.3 Control requests (CONTROL) */
struct virtio_wdt_ctrl_req {
	__le16 command;
	__le16 reserved0;
	__le32 value_ms;
	__le64 reserved1;
};

struct virtio_wdt_ctrl_resp {
	__le16 status;
	__le16 flags;
	__le32 timeout_ms;
	__le32 pretimeout_ms;
	__le32 time_left_ms;
};

#define VIRTIO_WDT_CMD_GET_STATUS	1
#define VIRTIO_WDT_CMD_START		2
#define VIRTIO_WDT_CMD_STOP		3
#define VIRTIO_WDT_CMD_KEEPALIVE	4
#define VIRTIO_WDT_CMD_SET_TIMEOUT	5
#define VIRTIO_WDT_CMD_SET_PRETIMEOUT	6
#define VIRTIO_WDT_CMD_SET_NOWAYOUT	7

#define VIRTIO_WDT_S_OK			0
#define VIRTIO_WDT_S_UNSUPPORTED	1
#define VIRTIO_WDT_S_INVALID		2
#define VIRTIO_WDT_S_DENIED		3
#define VIRTIO_WDT_S_NOT_ARMED		4

#define VIRTIO_WDT_FLAG_ARMED		0x1
#define VIRTIO_WDT_FLAG_NOWAYOUT	0x2
#define VIRTIO_WDT_FLAG_EXPIRED		0x4
#define VIRTIO_WDT_FLAG_PRETIMEOUT_FIRED 0x8

/* §6.4 Pretimeout notices (PRETIMEOUT), §6.12 VCPU_STALL notices: one 16-byte buffer */
struct virtio_wdt_notice {
	__le16 type;
	__le16 vcpu;			/* VCPU_STALL: the stalled vCPU; 0 for PRETIMEOUT */
	union {
		struct {
			__le32 time_left_ms;
			__le32 timeout_ms;
			__le32 pretimeout_ms;
		} pretimeout;
		struct {
			__le32 stalled_ms;	/* that vCPU's run time since its last pet */
			__le32 timeout_ms;	/* vcpu_timeout_ms */
			__le32 stage2_ms;	/* VM run time left before stage two */
		} vcpu_stall;
	};
};

#define VIRTIO_WDT_NOTICE_PRETIMEOUT	1
#define VIRTIO_WDT_NOTICE_VCPU_STALL	2

/* §6.5 Event records (EVENTS): the device-readable part of a record chain */
struct virtio_wdt_record {
	__le32 state;			/* VIRTIO_WDT_RECORD_COMMITTED, written last */
	__le16 type;
	__u8 code_count;
	__u8 code_format;
	__le32 sequence;
	__le32 vcpu_id;
	__le64 guest_time_ns;
	__le64 codes[VIRTIO_WDT_CODES_MAX];
	__le16 message_len;
	__le16 reserved0;
	__le32 log_tail_len;
	__le64 reserved1;
	__u8 data[];			/* message, then log tail */
};

#define VIRTIO_WDT_RECORD_PANIC		1
#define VIRTIO_WDT_RECORD_CRASH_LOADED	2
#define VIRTIO_WDT_RECORD_SHUTDOWN	3

#define VIRTIO_WDT_CODES_GENERIC	0
#define VIRTIO_WDT_CODES_WINDOWS_BUGCHECK 1
#define VIRTIO_WDT_CODES_HYPERV_CRASH	2

#define VIRTIO_WDT_VCPU_UNKNOWN		0xFFFFFFFFu

/* The first eight bytes of the device-writable part of a record chain */
struct virtio_wdt_record_status {
	__u8 status;
	__u8 reserved[3];
	__le32 host_sequence;
};

#define VIRTIO_WDT_RS_PENDING		0
#define VIRTIO_WDT_RS_ACCEPTED		1
#define VIRTIO_WDT_RS_MALFORMED		2
#define VIRTIO_WDT_RS_UNSUPPORTED	3

/* §6.6 panic_events bits (as pvpanic) */
#define VIRTIO_WDT_PANIC_PANICKED	0x1
#define VIRTIO_WDT_PANIC_CRASH_LOADED	0x2
#define VIRTIO_WDT_PANIC_SHUTDOWN	0x4

/* §6.7 boot_reason values */
#define VIRTIO_WDT_BOOT_NONE		0
#define VIRTIO_WDT_BOOT_WATCHDOG	1
#define VIRTIO_WDT_BOOT_PANIC		2
#define VIRTIO_WDT_BOOT_HOST		3

#endif /* VIRTIO_WDT_H */
