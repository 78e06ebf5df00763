#include "libhv/io/xen_gnttab.hpp"
#include "libhv/io/shared_mem.hpp"

namespace hv::xen::gnt {
using namespace hv::io;
namespace {

// The {flags, domid} pair of an entry as one 32-bit word (little endian: flags low).
u32_alias* header(grant_entry_v1& e) { return reinterpret_cast<u32_alias*>(&e); }
constexpr std::uint16_t hdr_flags(std::uint32_t h) { return static_cast<std::uint16_t>(h); }
constexpr domid_t hdr_domid(std::uint32_t h) { return static_cast<domid_t>(h >> 16); }

struct pin_result {
    std::int16_t status;
    unsigned char* page;
};

// Validates grant `ref` of `g` for `accessor` and pins it for read or write.
pin_result pin(domain& g, domid_t accessor, grant_ref_t ref, bool write, bool for_map) {
    grant_table& t = g.gnttab;
    if (ref >= t.nr_entries()) return {gntst_bad_gntref, nullptr};
    grant_active& act = t.active[ref];
    if ((act.readers || act.writers) && act.accessor != accessor)
        return {gntst_permission_denied, nullptr};
    grant_entry_v1& e = t.shared[ref];
    std::uint16_t set = write ? (gtf_reading | gtf_writing) : gtf_reading;
    std::uint32_t h = load_relaxed(header(e));
    for (;;) {
        std::uint16_t f = hdr_flags(h);
        if ((f & gtf_type_mask) != gtf_permit_access) return {gntst_bad_gntref, nullptr};
        if (for_map && (f & gtf_sub_page)) return {gntst_general_error, nullptr};
        if (hdr_domid(h) != accessor) return {gntst_permission_denied, nullptr};
        if (write && (f & gtf_readonly)) return {gntst_permission_denied, nullptr};
        // Set the in-use bits only if {flags, domid} is still what we checked.
        if (__atomic_compare_exchange_n(header(e), &h, h | set, false, __ATOMIC_SEQ_CST,
                                        __ATOMIC_RELAXED))
            break;
    }
    if (!act.readers && !act.writers) {
        act.frame = load_acquire(&e.frame); // read once; the pin keeps using this copy
        act.accessor = accessor;
    }
    auto* page = static_cast<unsigned char*>(g.plat().guest_frame(act.frame));
    if (!page) {
        if (!act.readers && !act.writers) {
            // Undo our bits (nobody else holds the entry).
            __atomic_fetch_and(&e.flags, static_cast<std::uint16_t>(~(gtf_reading | gtf_writing)),
                               __ATOMIC_SEQ_CST);
        } else if (write && !act.writers) {
            __atomic_fetch_and(&e.flags, static_cast<std::uint16_t>(~gtf_writing), __ATOMIC_SEQ_CST);
        }
        return {gntst_bad_page, nullptr};
    }
    if (write) ++act.writers; else ++act.readers;
    return {gntst_okay, page};
}

void unpin(domain& g, grant_ref_t ref, bool write) {
    grant_table& t = g.gnttab;
    if (ref >= max_grant_entries) return;
    grant_active& act = t.active[ref];
    if (write) {
        if (act.writers) --act.writers;
    } else if (act.readers) {
        --act.readers;
    }
    std::uint16_t clear = 0;
    if (!act.writers) clear |= gtf_writing;
    if (!act.writers && !act.readers) clear |= gtf_reading;
    if (clear) __atomic_fetch_and(&t.shared[ref].flags, static_cast<std::uint16_t>(~clear), __ATOMIC_SEQ_CST);
}

bool copy_range_ok(std::uint16_t offset, std::uint16_t len) {
    return std::uint32_t{offset} + len <= page_size;
}

} // namespace

int grow(domain& d, std::uint32_t frames) {
    if (frames > max_grant_frames) return -err::einval;
    if (frames > d.gnttab.nr_frames) d.gnttab.nr_frames = frames;
    return 0;
}

mapping map(domain& mapper, domid_t granter, grant_ref_t ref, bool readonly, std::uint64_t host_gfn) {
    domain* g = mapper.table().find(mapper.resolve(granter));
    if (!g) return {gntst_bad_domain, 0, nullptr};
    // A free handle first, so failing for lack of one leaves nothing to undo.
    grant_handle_t h = 0;
    while (h < max_maptrack && mapper.gnttab.maptrack[h].used) ++h;
    if (h == max_maptrack) return {gntst_no_space, 0, nullptr};
    pin_result p = pin(*g, mapper.id(), ref, !readonly, true);
    if (p.status != gntst_okay) return {p.status, 0, nullptr};
    if (host_gfn != no_gfn && !mapper.plat().map_foreign_page(host_gfn, p.page, readonly).ok()) {
        unpin(*g, ref, !readonly);
        return {gntst_bad_virt_addr, 0, nullptr};
    }
    maptrack_entry& m = mapper.gnttab.maptrack[h];
    m.used = true;
    m.readonly = readonly;
    m.granter = g->id();
    m.ref = ref;
    m.host_gfn = host_gfn;
    m.page = p.page;
    return {gntst_okay, h, p.page};
}

std::int16_t unmap(domain& mapper, grant_handle_t handle, std::uint64_t host_gfn) {
    if (handle >= max_maptrack || !mapper.gnttab.maptrack[handle].used) return gntst_bad_handle;
    maptrack_entry& m = mapper.gnttab.maptrack[handle];
    if (host_gfn != no_gfn && host_gfn != m.host_gfn) return gntst_bad_virt_addr;
    if (m.host_gfn != no_gfn) (void)mapper.plat().unmap_foreign_page(m.host_gfn);
    if (domain* g = mapper.table().find(m.granter)) unpin(*g, m.ref, !m.readonly);
    m = maptrack_entry{};
    return gntst_okay;
}

namespace {

struct copy_end {
    unsigned char* page = nullptr;
    domain* pinned = nullptr; // non-null: unpin (pinned, ref, write) afterwards
    grant_ref_t ref = 0;
    bool write = false;
};

// Resolves one side of a GNTTABOP_copy to a host page.
std::int16_t resolve_end(domain& caller, const gnttab_copy_ptr& ptr, bool is_gref, bool write,
                         copy_end& out) {
    if (!is_gref) {
        // A frame of the caller's own memory.
        if (!caller.is_self(ptr.domid)) return gntst_permission_denied;
        out.page = static_cast<unsigned char*>(caller.plat().guest_frame(ptr.u.gmfn));
        return out.page ? gntst_okay : gntst_bad_page;
    }
    domain* g = caller.table().find(caller.resolve(ptr.domid));
    if (!g) return gntst_bad_domain;
    pin_result p = pin(*g, caller.id(), ptr.u.ref, write, false);
    if (p.status != gntst_okay) return p.status;
    out = {p.page, g, ptr.u.ref, write};
    return gntst_okay;
}

void release_end(copy_end& e) {
    if (e.pinned) unpin(*e.pinned, e.ref, e.write);
    e = copy_end{};
}

} // namespace

std::int16_t copy(domain& caller, gnttab_copy& op) {
    if (!copy_range_ok(op.source.offset, op.len) || !copy_range_ok(op.dest.offset, op.len))
        return op.status = gntst_bad_copy_arg;
    copy_end src, dst;
    std::int16_t st = resolve_end(caller, op.source, op.flags & gntcopy_source_gref, false, src);
    if (st == gntst_okay) {
        st = resolve_end(caller, op.dest, op.flags & gntcopy_dest_gref, true, dst);
        if (st == gntst_okay)
            __builtin_memmove(dst.page + op.dest.offset, src.page + op.source.offset, op.len);
    }
    release_end(dst);
    release_end(src);
    return op.status = st;
}

std::int16_t copy_to_grant(domain& accessor, domid_t granter, grant_ref_t ref,
                           std::uint16_t offset, const void* src, std::uint16_t len) {
    if (!copy_range_ok(offset, len)) return gntst_bad_copy_arg;
    domain* g = accessor.table().find(accessor.resolve(granter));
    if (!g) return gntst_bad_domain;
    pin_result p = pin(*g, accessor.id(), ref, true, false);
    if (p.status != gntst_okay) return p.status;
    __builtin_memcpy(p.page + offset, src, len);
    unpin(*g, ref, true);
    return gntst_okay;
}

std::int16_t copy_from_grant(domain& accessor, domid_t granter, grant_ref_t ref,
                             std::uint16_t offset, void* dst, std::uint16_t len) {
    if (!copy_range_ok(offset, len)) return gntst_bad_copy_arg;
    domain* g = accessor.table().find(accessor.resolve(granter));
    if (!g) return gntst_bad_domain;
    pin_result p = pin(*g, accessor.id(), ref, false, false);
    if (p.status != gntst_okay) return p.status;
    __builtin_memcpy(dst, p.page + offset, len);
    unpin(*g, ref, false);
    return gntst_okay;
}

namespace guest {

status grant_access(std::span<grant_entry_v1> table, grant_ref_t ref, domid_t to,
                    std::uint32_t frame, bool readonly) {
    if (ref >= table.size()) return fail(errc::out_of_range, "grant: reference out of range");
    grant_entry_v1& e = table[ref];
    std::uint16_t f = load_acquire(&e.flags);
    if ((f & gtf_type_mask) != gtf_invalid || (f & (gtf_reading | gtf_writing)))
        return fail(errc::busy, "grant: entry in use");
    store_relaxed(&e.domid, to);
    store_relaxed(&e.frame, frame);
    // Flags last: the entry becomes valid only once domid and frame are in place.
    store_release(&e.flags, static_cast<std::uint16_t>(gtf_permit_access | (readonly ? gtf_readonly : 0)));
    return {};
}

status end_access(std::span<grant_entry_v1> table, grant_ref_t ref) {
    if (ref >= table.size()) return fail(errc::out_of_range, "grant: reference out of range");
    u32_alias* h = header(table[ref]);
    std::uint32_t old = load_relaxed(h);
    for (;;) {
        if (hdr_flags(old) & (gtf_reading | gtf_writing))
            return fail(errc::busy, "grant: revoke while mapped");
        if (__atomic_compare_exchange_n(h, &old, std::uint32_t{0}, false, __ATOMIC_SEQ_CST,
                                        __ATOMIC_RELAXED))
            return {};
    }
}

} // namespace guest
} // namespace hv::xen::gnt
