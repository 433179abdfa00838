/* SPDX-License-Identifier: MIT */
/**
 * @file vmmu/dmproto.h
 * @brief The wire protocol between a vm and an out-of-process device model:
 *        the shared request page, its slot state machine, the buffered-write
 *        ring, the region table and the socket messages.
 *
 * Both sides include this header: libvmmu (the vm side, vmmu/dm.h) and the
 * device-model client library (vmmu/dmclient.h).  Everything is fixed-size
 * and little-endian; nothing is bit-packed.
 *
 * Trust.  The device model can write anything into the shared page at any
 * time.  The vm keeps its own private copy of every request it made and
 * reads back only a slot's state word, its response sequence number and its
 * data word, each validated: a device model that lies hurts its own
 * requests, never the vm.  The region table is written by the vm and never
 * read back by it.
 *
 * Slot state machine (one slot per vCPU, plus one for host accesses):
 *
 *     FREE --vm fills, release--> READY --dm claims (CAS)--> IN_SERVICE
 *       ^                                                        |
 *       +---- vm takes the answer <-- RESPONSE <--dm answers-----+
 *
 * Only the vm moves FREE->READY and RESPONSE->FREE; only the device model
 * moves READY->IN_SERVICE->RESPONSE.  After each transition the mover
 * notifies the other side: the vm sends a byte on the kick channel, the
 * device model on the slot's response channel.
 *
 * Channels and files.  A wake-up channel is a datagram socket pair
 * (AF_UNIX, SOCK_DGRAM): each side has its own end, sends and receives
 * only with MSG_DONTWAIT, and treats a full queue as a wake-up already
 * pending, so neither side can make the other block (an eventfd's single
 * open file would let either clear O_NONBLOCK, or fill its counter, and
 * hang the other in a write).  The shared page is a memfd sealed at its
 * size, the vm's memfd is sealed against shrinking: neither side can
 * truncate a file under the other's mappings (a SIGBUS).  Each side
 * checks what it receives.
 */
#ifndef VMMU_DMPROTO_H
#define VMMU_DMPROTO_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** "vmmudm01": first 8 bytes of the shared page. */
#define VMMU_DM_PROTO_MAGIC 0x31306d64756d6d76ull
/** Protocol version; a client refuses any other. */
#define VMMU_DM_PROTO_VERSION 4u /* 4: socket channels, sealed files */

/** Slot states (struct vmmu_dm_slot::state). */
enum vmmu_dm_slot_state {
    VMMU_DM_SLOT_FREE = 0,       /**< no request */
    VMMU_DM_SLOT_READY = 1,      /**< the vm posted a request */
    VMMU_DM_SLOT_IN_SERVICE = 2, /**< the device model claimed it */
    VMMU_DM_SLOT_RESPONSE = 3,   /**< the device model answered */
};

/** What a request addresses. */
enum vmmu_dm_space {
    VMMU_DM_SPACE_MMIO = 0, /**< guest-physical address */
    VMMU_DM_SPACE_PIO = 1,  /**< x86 I/O port */
};

/** Device-model status in a response (struct vmmu_dm_slot::status). */
#define VMMU_DM_STATUS_OK 0u
/** The device model failed the access; the vm reports VMMU_EDEVICE. */
#define VMMU_DM_STATUS_ERROR 1u

/** One request slot: one cache line. */
struct vmmu_dm_slot {
    uint32_t state;    /**< enum vmmu_dm_slot_state; accessed atomically */
    uint32_t seq;      /**< set by the vm for each request */
    uint32_t resp_seq; /**< the device model copies @ref seq here when it answers */
    uint8_t space;     /**< enum vmmu_dm_space */
    uint8_t write;     /**< 1 write, 0 read */
    uint8_t size;      /**< 1, 2, 4 or 8 */
    uint8_t status;    /**< VMMU_DM_STATUS_*, set with the answer */
    uint64_t addr;     /**< gpa or port */
    uint64_t data;     /**< write: value; read: the answer (low @ref size bytes used) */
    int32_t vcpu_id;   /**< the vCPU making the access, -1 for the host */
    uint32_t reserved[7];
};

/** One buffered (posted) write. */
struct vmmu_dm_bufreq {
    uint64_t addr;
    uint64_t data;
    uint8_t space;
    uint8_t size;
    uint8_t reserved[6];
};

/** Ring of buffered writes: the vm produces, the device model consumes.
 *  Indices run freely; entry i lives at ent[i % entries]. */
struct vmmu_dm_ring {
    uint32_t prod; /**< written by the vm (release) */
    uint32_t pad0[15];
    uint32_t cons; /**< written by the device model (release) */
    uint32_t pad1[15];
    /* struct vmmu_dm_bufreq ent[entries] follows */
};

/** One RAM region a device model may map. */
struct vmmu_dm_region_ent {
    uint64_t gpa;
    uint64_t size;
    uint64_t memfd_offset; /**< where the region starts in the vm's memfd */
    uint32_t flags;        /**< VMMU_DM_REGION_* */
    uint32_t reserved;
};
/** The region may be written (RAM; ROM lacks it). */
#define VMMU_DM_REGION_WRITABLE 1u

/** The region table, published by the vm under a sequence lock: @ref seq is
 *  odd while the vm rewrites it; readers retry until they read the same
 *  even value before and after. */
struct vmmu_dm_region_table {
    uint32_t seq;
    uint32_t count;
    uint64_t generation; /**< the vm's P2M generation the table reflects */
    /* struct vmmu_dm_region_ent ent[max_regions] follows */
};

/** Header at offset 0 of the shared page. */
struct vmmu_dm_shared {
    uint64_t magic;          /**< VMMU_DM_PROTO_MAGIC */
    uint32_t version;        /**< VMMU_DM_PROTO_VERSION */
    uint32_t nslots;         /**< request slots (vCPUs + 1; the last is the host's) */
    uint32_t ring_entries;   /**< buffered-write ring entries (power of two), 0 if none */
    uint32_t max_regions;    /**< region table capacity */
    uint64_t slots_offset;   /**< struct vmmu_dm_slot[nslots] */
    uint64_t ring_offset;    /**< struct vmmu_dm_ring + entries, if ring_entries */
    uint64_t regions_offset; /**< struct vmmu_dm_region_table + entries */
    uint64_t size;           /**< bytes of the whole shared area */
};

/** Socket message types. */
enum vmmu_dm_msg_type {
    /** vm -> dm, first message.  Carries file descriptors (SCM_RIGHTS), in
     *  order: the shared page, the kick channel, @c nslots response channels,
     *  the service socket, then the vm's memfd if @c flags has
     *  VMMU_DM_HELLO_MEMFD, then the device dirty bitmap if it has
     *  VMMU_DM_HELLO_DIRTY.  @c seq holds nslots, @c gpa the shared size. */
    VMMU_DM_MSG_HELLO = 1,
    /** vm -> dm: the vm's memfd (one fd), for a vm that had none at hello. */
    VMMU_DM_MSG_MEMFD = 2,
    /** vm -> dm: drop every mapping of [gpa, gpa + size) and acknowledge @c seq. */
    VMMU_DM_MSG_INVALIDATE = 3,
    /** dm -> vm: every invalidation up to and including @c seq is done. */
    VMMU_DM_MSG_INVALIDATE_ACK = 4,
    /** dm -> vm, on the service socket: make [gpa, gpa + size) mappable:
     *  bring its pages back into memory if the pager took them, and say
     *  where the resident memory around @c gpa lives (the region table
     *  leaves out regions that have paged-out pages).  @c seq is the
     *  device model's own; @c flags 0; 0 < size <= VMMU_DM_PAGE_IN_MAX.
     *  The answer is a struct vmmu_dm_page_in_done. */
    VMMU_DM_MSG_PAGE_IN = 5,
    /** vm -> dm, on the service socket: the answer (struct
     *  vmmu_dm_page_in_done) to the PAGE_IN with the same @c seq. */
    VMMU_DM_MSG_PAGE_IN_DONE = 6,
};

/** PAGE_IN_DONE status: @c run names resident RAM or ROM that holds the
 *  request's first byte; map it like a region-table entry (an invalidation
 *  of any part of it arrives as usual if the pager takes it again). */
#define VMMU_DM_PAGE_IN_OK 0u
/** PAGE_IN_DONE status: the request's first byte is not RAM or ROM of the
 *  vm, or the guest gave its page back (balloon), or it lies in a region
 *  added since the region table was published (a device model learns of
 *  new memory with the next table, at a device access, not in the middle
 *  of a transfer).  Later bytes of the range are not looked at. */
#define VMMU_DM_PAGE_IN_HOLE 1u
/** PAGE_IN_DONE status: a page could not be brought back (no pager, or its
 *  I/O failed). */
#define VMMU_DM_PAGE_IN_FAILED 2u
/** PAGE_IN_DONE status: the request was malformed (size 0 or too large, or
 *  the range wraps). */
#define VMMU_DM_PAGE_IN_BAD 3u
/** PAGE_IN_DONE status: the pager took the first page again before the
 *  answer was made, or the page-in waited (for the map to settle) and the
 *  answer would be out of date; ask again. */
#define VMMU_DM_PAGE_IN_AGAIN 4u
/** Largest range one PAGE_IN may ask for (the largest mapcache bucket). */
#define VMMU_DM_PAGE_IN_MAX (16ull << 20)
/** Most bytes a PAGE_IN_DONE run reaches on each side of the request's
 *  first byte (so the vm looks at a bounded number of pages). */
#define VMMU_DM_PAGE_IN_REACH (1ull << 20)

/** The answer to a PAGE_IN (48 bytes, on the service socket only). */
struct vmmu_dm_page_in_done {
    uint32_t type;   /**< VMMU_DM_MSG_PAGE_IN_DONE */
    uint32_t status; /**< VMMU_DM_PAGE_IN_* */
    uint64_t seq;    /**< the request's */
    /** With VMMU_DM_PAGE_IN_OK: the resident memory around the request's
     *  first byte, as a region-table entry (else all zero). */
    struct vmmu_dm_region_ent run;
};
/** HELLO flag: the vm's memfd follows the response channels. */
#define VMMU_DM_HELLO_MEMFD 1u
/** HELLO flag: the device dirty bitmap's descriptor comes last (after the
 *  memfd, if any): a memfd of VMMU_DM_DIRTY_PAGES bits, sealed against
 *  shrinking, shared by the vm and every device model.  Bit p (bit p % 64
 *  of 64-bit word p / 64) stands for the page at offset p * 4096 of the
 *  vm's memfd.  A device model sets the bits of the pages it wrote
 *  (atomically, after the stores, with release order); the vm's dirty log
 *  takes and clears them (vmmu_dirty_log_get_and_clear). */
#define VMMU_DM_HELLO_DIRTY 2u
/** Pages of the vm's memfd the device dirty bitmap covers: its first
 *  16 TiB, which is all the vm puts there (the bitmap is 512 MiB of
 *  address space, sparse: only words ever set use memory). */
#define VMMU_DM_DIRTY_PAGES (1ull << 32)

/** Every socket message is exactly this size.
 *
 *  The main socket (the one the vm was given) carries HELLO, MEMFD,
 *  INVALIDATE and INVALIDATE_ACK.  The service socket (a SOCK_SEQPACKET
 *  socket whose device-model end comes with HELLO) carries PAGE_IN (this
 *  struct) and its answer (struct vmmu_dm_page_in_done), served by a vm
 *  thread, so a device model can ask while the vCPUs run.  A device model
 *  that sends anything else there, or a message of another size, loses its
 *  service socket (the vm closes its end). */
struct vmmu_dm_msg {
    uint32_t type;  /**< enum vmmu_dm_msg_type */
    uint32_t flags;
    uint64_t seq;
    uint64_t gpa;
    uint64_t size;
};

/** Most slots a shared page may declare (bounds the fds of a HELLO). */
#define VMMU_DM_MAX_SLOTS 129u
/** Most descriptors a HELLO carries: shared page, kick, one per slot,
 *  service socket, memfd, dirty bitmap. */
#define VMMU_DM_HELLO_MAX_FDS (VMMU_DM_MAX_SLOTS + 5u)

#ifdef __cplusplus
}
#endif
#endif /* VMMU_DMPROTO_H */
