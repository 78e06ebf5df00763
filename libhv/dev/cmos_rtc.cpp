#include "libhv/dev/cmos_rtc.hpp"

namespace hv::dev {

using namespace rtc_bits;

namespace {
constexpr std::uint64_t seconds_per_day = 86400;

bool leap(std::uint32_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }
unsigned days_in_month(std::uint32_t y, unsigned m) {
    static constexpr std::uint8_t days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && leap(y) ? 29 : days[m - 1];
}
std::uint8_t reg(cmos_reg r) { return static_cast<std::uint8_t>(r); }
} // namespace

civil_time civil_from_unix(std::uint64_t seconds) {
    civil_time t{};
    std::uint64_t days = seconds / seconds_per_day;
    std::uint64_t rest = seconds % seconds_per_day;
    t.hour = static_cast<std::uint8_t>(rest / 3600);
    t.minute = static_cast<std::uint8_t>(rest / 60 % 60);
    t.second = static_cast<std::uint8_t>(rest % 60);
    t.weekday = static_cast<std::uint8_t>((days + 4) % 7 + 1);    // 1970-01-01 was a Thursday
    std::uint32_t y = 1970;
    // Whole 400-year cycles first (146097 days each) keep the loop short.
    y += static_cast<std::uint32_t>(days / 146097 * 400);
    days %= 146097;
    while (days >= (leap(y) ? 366u : 365u)) {
        days -= leap(y) ? 366 : 365;
        ++y;
    }
    unsigned m = 1;
    while (days >= days_in_month(y, m)) {
        days -= days_in_month(y, m);
        ++m;
    }
    t.year = y;
    t.month = static_cast<std::uint8_t>(m);
    t.day = static_cast<std::uint8_t>(days + 1);
    return t;
}

std::uint64_t unix_from_civil(const civil_time& t) {
    std::uint32_t year = t.year < 1970 ? 1970 : t.year;
    std::uint64_t days = 0;
    std::uint32_t y = 1970;
    days += (year - y) / 400 * 146097;
    y += (year - y) / 400 * 400;
    for (; y < year; ++y) days += leap(y) ? 366 : 365;
    unsigned month = t.month < 1 ? 1 : t.month > 12 ? 12 : t.month;
    for (unsigned m = 1; m < month; ++m) days += days_in_month(year, m);
    unsigned day = t.day < 1 ? 1 : t.day;
    if (day > days_in_month(year, month)) day = days_in_month(year, month);
    days += day - 1;
    return days * seconds_per_day + (t.hour % 24) * 3600u + (t.minute % 60) * 60u + (t.second % 60);
}

cmos_rtc::cmos_rtc(timer_queue& timers, std::uint64_t unix_seconds_at_tick0)
    : timers_{timers}, hz_{timers.clock().frequency()}, timer_{&fired, this},
      base_seconds_{unix_seconds_at_tick0} {
    ram_[reg(cmos_reg::status_a)] = 0x26;      // 32.768 kHz time base, 1024 Hz periodic rate
    ram_[reg(cmos_reg::status_b)] = b_24h;     // BCD, 24-hour
    ram_[reg(cmos_reg::status_d)] = d_vrt;
    ram_[reg(cmos_reg::equipment)] = 0x02;     // math coprocessor present
    set_memory(0, 0);
}

void cmos_rtc::set_memory(std::uint64_t below, std::uint64_t above) {
    constexpr std::uint64_t mib = 1ull << 20;
    auto put16 = [&](cmos_reg lo, std::uint64_t v) {
        ram_[reg(lo)] = static_cast<std::uint8_t>(v);
        ram_[reg(lo) + 1] = static_cast<std::uint8_t>(v >> 8);
    };
    put16(cmos_reg::base_mem_lo, 640);
    std::uint64_t ext_kib = below > mib ? (below - mib) / 1024 : 0;
    if (ext_kib > 0xffff) ext_kib = 0xffff;
    put16(cmos_reg::ext_mem_lo, ext_kib);
    put16(cmos_reg::ext_mem2_lo, ext_kib);
    std::uint64_t above16 = below > 16 * mib ? (below - 16 * mib) >> 16 : 0;
    if (above16 > 0xffff) above16 = 0xffff;
    put16(cmos_reg::mem_above_16m_lo, above16);
    std::uint64_t above4g = above >> 16;
    if (above4g > 0xffffff) above4g = 0xffffff;
    ram_[reg(cmos_reg::mem_above_4g_lo)] = static_cast<std::uint8_t>(above4g);
    ram_[reg(cmos_reg::mem_above_4g_mid)] = static_cast<std::uint8_t>(above4g >> 8);
    ram_[reg(cmos_reg::mem_above_4g_hi)] = static_cast<std::uint8_t>(above4g >> 16);
    update_checksum();
}

void cmos_rtc::set_cpu_count(unsigned cpus) {
    ram_[reg(cmos_reg::cpu_count_minus_1)] = static_cast<std::uint8_t>(cpus ? cpus - 1 : 0);
}

void cmos_rtc::update_checksum() {
    // The IBM AT checksum covers 0x10-0x2d, stored big-endian at 0x2e.
    std::uint16_t sum = 0;
    for (unsigned i = 0x10; i <= 0x2d; ++i) sum = static_cast<std::uint16_t>(sum + ram_[i]);
    ram_[reg(cmos_reg::checksum_hi)] = static_cast<std::uint8_t>(sum >> 8);
    ram_[reg(cmos_reg::checksum_lo)] = static_cast<std::uint8_t>(sum);
}

std::uint64_t cmos_rtc::unix_time() const {
    if (ram_[reg(cmos_reg::status_b)] & b_set) return frozen_seconds_;
    return base_seconds_ + (timers_.now() - base_tick_) / hz_;
}

void cmos_rtc::set_time(std::uint64_t seconds) {
    if (ram_[reg(cmos_reg::status_b)] & b_set) {
        frozen_seconds_ = seconds;
        return;
    }
    std::uint64_t now = timers_.now();
    base_tick_ = now - (now - base_tick_) % hz_;    // keep the sub-second phase
    base_seconds_ = seconds;
}

std::uint8_t cmos_rtc::encode(std::uint32_t v) const {
    if (ram_[reg(cmos_reg::status_b)] & b_binary) return static_cast<std::uint8_t>(v);
    v %= 100;
    return static_cast<std::uint8_t>((v / 10) << 4 | (v % 10));
}

std::uint32_t cmos_rtc::decode(std::uint8_t v) const {
    if (ram_[reg(cmos_reg::status_b)] & b_binary) return v;
    return (v >> 4) * 10u + (v & 15);
}

std::uint8_t cmos_rtc::encode_hour(std::uint8_t h) const {
    if (ram_[reg(cmos_reg::status_b)] & b_24h) return encode(h);
    std::uint8_t h12 = h % 12 == 0 ? 12 : h % 12;
    return static_cast<std::uint8_t>(encode(h12) | (h >= 12 ? 0x80 : 0));
}

std::uint8_t cmos_rtc::decode_hour(std::uint8_t v) const {
    if (ram_[reg(cmos_reg::status_b)] & b_24h) return static_cast<std::uint8_t>(decode(v));
    std::uint32_t h = decode(v & 0x7f) % 12;
    return static_cast<std::uint8_t>(h + ((v & 0x80) ? 12 : 0));
}

bool cmos_rtc::alarm_matches(std::uint64_t seconds) const {
    civil_time t = civil_from_unix(seconds);
    auto match = [&](cmos_reg r, std::uint32_t field, bool hour) {
        std::uint8_t a = ram_[reg(r)];
        if ((a & 0xc0) == 0xc0) return true;    // "don't care"
        return (hour ? decode_hour(a) : decode(a)) == field;
    };
    return match(cmos_reg::seconds_alarm, t.second, false) && match(cmos_reg::minutes_alarm, t.minute, false) &&
           match(cmos_reg::hours_alarm, t.hour, true);
}

std::uint32_t cmos_rtc::periodic_divider() const {
    unsigned rate = ram_[reg(cmos_reg::status_a)] & 0x0f;
    if (rate == 0) return 0;
    if (rate < 3) return rate == 1 ? 128 : 256;     // rates 1 and 2 alias 8 and 9
    return 1u << (rate - 1);
}

void cmos_rtc::update_flags(std::uint64_t now) {
    std::uint8_t& c = ram_[reg(cmos_reg::status_c)];
    const std::uint8_t b = ram_[reg(cmos_reg::status_b)];
    if (now > flags_tick_) {
        if (!(b & b_set)) {
            std::uint64_t from = flags_tick_ > base_tick_ ? flags_tick_ : base_tick_;
            std::uint64_t s0 = (from - base_tick_) / hz_, s1 = (now - base_tick_) / hz_;
            if (s1 > s0) {
                c |= c_uf;
                if (alarm_matches(base_seconds_ + s1)) c |= c_af;
            }
        }
        if (std::uint32_t div = periodic_divider(); div) {
            if (mul_div(now, 32768, hz_) / div > mul_div(flags_tick_, 32768, hz_) / div) c |= c_pf;
        }
        flags_tick_ = now;
    }
    if (c & b & (c_pf | c_af | c_uf)) c |= c_irqf;
    irq_.set(c & c_irqf);
}

void cmos_rtc::reschedule(std::uint64_t now) {
    const std::uint8_t b = ram_[reg(cmos_reg::status_b)];
    // IRQ8 stays asserted until C is read; nothing to schedule before that.
    if (!(b & (b_pie | b_aie | b_uie)) || (ram_[reg(cmos_reg::status_c)] & c_irqf)) {
        timers_.disarm(timer_);
        return;
    }
    std::uint64_t deadline = ~std::uint64_t{0};
    if ((b & b_pie) && periodic_divider()) {
        std::uint64_t div = periodic_divider();
        std::uint64_t next = (mul_div(now, 32768, hz_) / div + 1) * div;
        deadline = mul_div_ceil(next, hz_, 32768);
    }
    if ((b & (b_aie | b_uie)) && !(b & b_set)) {
        std::uint64_t next = base_tick_ + ((now - base_tick_) / hz_ + 1) * hz_;
        if (next < deadline) deadline = next;
    }
    if (deadline == ~std::uint64_t{0}) timers_.disarm(timer_);
    else timers_.arm(timer_, deadline);
}

void cmos_rtc::fired(void* ctx, std::uint64_t now) {
    auto* rtc = static_cast<cmos_rtc*>(ctx);
    rtc->update_flags(now);
    rtc->reschedule(now);
}

std::uint8_t cmos_rtc::read_reg(std::uint8_t idx) {
    std::uint64_t now = timers_.now();
    switch (static_cast<cmos_reg>(idx)) {
    case cmos_reg::seconds:
    case cmos_reg::minutes:
    case cmos_reg::hours:
    case cmos_reg::day_of_week:
    case cmos_reg::day_of_month:
    case cmos_reg::month:
    case cmos_reg::year:
    case cmos_reg::century: {
        civil_time t = civil_from_unix(unix_time());
        switch (static_cast<cmos_reg>(idx)) {
        case cmos_reg::seconds: return encode(t.second);
        case cmos_reg::minutes: return encode(t.minute);
        case cmos_reg::hours: return encode_hour(t.hour);
        case cmos_reg::day_of_week: return encode(t.weekday);
        case cmos_reg::day_of_month: return encode(t.day);
        case cmos_reg::month: return encode(t.month);
        case cmos_reg::year: return encode(t.year % 100);
        default: return encode(t.year / 100);
        }
    }
    case cmos_reg::status_a: {
        std::uint8_t a = ram_[idx] & 0x7f;
        if (!(ram_[reg(cmos_reg::status_b)] & b_set)) {
            std::uint64_t window = mul_div_ceil(hz_, 244, 1000000);
            if ((now - base_tick_) % hz_ >= hz_ - window) a |= a_uip;
        }
        return a;
    }
    case cmos_reg::status_c: {
        update_flags(now);
        std::uint8_t c = ram_[idx];
        ram_[idx] = 0;
        irq_.lower();
        reschedule(now);
        return c;
    }
    default:
        return ram_[idx];
    }
}

void cmos_rtc::write_reg(std::uint8_t idx, std::uint8_t v) {
    std::uint64_t now = timers_.now();
    switch (static_cast<cmos_reg>(idx)) {
    case cmos_reg::seconds:
    case cmos_reg::minutes:
    case cmos_reg::hours:
    case cmos_reg::day_of_month:
    case cmos_reg::month:
    case cmos_reg::year:
    case cmos_reg::century: {
        civil_time t = civil_from_unix(unix_time());
        switch (static_cast<cmos_reg>(idx)) {
        case cmos_reg::seconds: t.second = static_cast<std::uint8_t>(decode(v) % 60); break;
        case cmos_reg::minutes: t.minute = static_cast<std::uint8_t>(decode(v) % 60); break;
        case cmos_reg::hours: t.hour = static_cast<std::uint8_t>(decode_hour(v) % 24); break;
        case cmos_reg::day_of_month: t.day = static_cast<std::uint8_t>(decode(v)); break;
        case cmos_reg::month: t.month = static_cast<std::uint8_t>(decode(v)); break;
        case cmos_reg::year: t.year = t.year / 100 * 100 + decode(v) % 100; break;
        default: t.year = decode(v) * 100 + t.year % 100; break;
        }
        set_time(unix_from_civil(t));
        return;
    }
    case cmos_reg::day_of_week:     // derived from the date
        return;
    case cmos_reg::status_a:
        update_flags(now);
        ram_[idx] = v & 0x7f;
        reschedule(now);
        return;
    case cmos_reg::status_b: {
        update_flags(now);
        std::uint8_t old = ram_[idx];
        if ((v & b_set) && !(old & b_set)) {
            frozen_seconds_ = unix_time();
            v &= static_cast<std::uint8_t>(~b_uie);     // SET clears UIE
        } else if (!(v & b_set) && (old & b_set)) {
            base_seconds_ = frozen_seconds_;
            base_tick_ = now;
            flags_tick_ = now;
        }
        ram_[idx] = v;
        update_flags(now);
        reschedule(now);
        return;
    }
    case cmos_reg::status_c:
    case cmos_reg::status_d:
        return;
    default:
        ram_[idx] = v;
        return;
    }
}

std::uint64_t cmos_rtc::read(std::uint64_t offset, unsigned) {
    if (offset != 1) return 0xff;   // the index register is write-only
    return read_reg(index_);
}

void cmos_rtc::write(std::uint64_t offset, unsigned, std::uint64_t value) {
    auto v = static_cast<std::uint8_t>(value);
    if (offset == 0) {
        index_ = v & 0x7f;
        nmi_masked_ = v & 0x80;
    } else if (offset == 1) {
        write_reg(index_, v);
    }
}

} // namespace hv::dev
