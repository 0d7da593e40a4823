//! The Vulkan side: instance, device, the compute pipeline and its grow-only buffers.
//!
//! A [`Context`] lives on the GPU thread only (it holds mapped pointers), so nothing here is
//! shared or locked. Every call that can fail returns the Vulkan error; the caller then stops
//! using the device.

use std::ffi::c_void;
use std::time::Duration;

use ash::vk;

use super::{DeviceInfo, DeviceKind};
use crate::error::Error;

/// The SPIR-V that engine/build.rs compiled from cppn.wgsl, with the register-file size of
/// each variant, smallest first.
const SPIRV: [(&[u8], usize); 2] = [
    (
        include_bytes!(concat!(env!("OUT_DIR"), "/cppn_small.spv")),
        32,
    ),
    (include_bytes!(concat!(env!("OUT_DIR"), "/cppn.spv")), 256),
];

/// Invocations per workgroup; `WORKGROUP` in cppn.wgsl.
pub const WORKGROUP: u32 = 64;

/// Longest one submission may run before we call the device hung. A submission is bounded by
/// the output buffer and by `MAX_WORK` (gpu/mod.rs), about 10 s on lavapipe sharing two cores.
const FENCE_TIMEOUT: Duration = Duration::from_secs(60);

/// Upper bound of the output buffer in bytes, also capped by the device's
/// `maxStorageBufferRange` (Vulkan guarantees at least 128 MiB; lavapipe reports exactly that).
const MAX_OUT_BYTES: u64 = 16 << 20;

/// Smallest allocation of a buffer, so that small jobs do not grow a buffer step by step.
const MIN_BUFFER_BYTES: u64 = 64 << 10;

/// Binding indices, as in cppn.wgsl.
pub const JOBS: usize = 0;
pub const OPS: usize = 1;
pub const TERMS: usize = 2;
pub const OUT_REGS: usize = 3;
pub const OUT: usize = 4;
const BINDINGS: usize = 5;

fn vk_err(what: &str) -> impl Fn(vk::Result) -> Error + '_ {
    move |e| Error(format!("Vulkan {what} failed: {e}"))
}

struct Buffer {
    buffer: vk::Buffer,
    memory: vk::DeviceMemory,
    ptr: *mut c_void,
    bytes: u64,
}

pub struct Context {
    // Keeps libvulkan loaded for as long as the handles below exist.
    _entry: ash::Entry,
    instance: ash::Instance,
    device: ash::Device,
    queue: vk::Queue,
    memory: vk::PhysicalDeviceMemoryProperties,
    set_layout: vk::DescriptorSetLayout,
    pipeline_layout: vk::PipelineLayout,
    /// (pipeline, registers) per shader variant, smallest register file first.
    pipelines: [(vk::Pipeline, usize); 2],
    descriptor_pool: vk::DescriptorPool,
    set: vk::DescriptorSet,
    command_pool: vk::CommandPool,
    command_buffer: vk::CommandBuffer,
    fence: vk::Fence,
    buffers: [Option<Buffer>; BINDINGS],
    max_groups_x: u32,
    /// Most f32 values one submission may write.
    pub max_out_floats: usize,
    pub info: DeviceInfo,
}

/// Preference among device types: real GPUs first, lavapipe (a CPU device) last but accepted.
fn rank(kind: DeviceKind) -> u32 {
    match kind {
        DeviceKind::Discrete => 0,
        DeviceKind::Integrated => 1,
        DeviceKind::Virtual => 2,
        DeviceKind::Cpu => 3,
        DeviceKind::Other => 4,
    }
}

/// Picks a device among `devices` (enumeration order; `None` where a device has no compute
/// queue). `selector` is `KRS_VULKAN_DEVICE`: an index or a case-insensitive name substring.
pub fn select(devices: &[Option<DeviceInfo>], selector: Option<&str>) -> Result<usize, Error> {
    let list = || {
        devices
            .iter()
            .enumerate()
            .map(|(i, d)| match d {
                Some(d) => format!("{i}: {} ({:?})", d.name, d.kind),
                None => format!("{i}: (no compute queue)"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    match selector.map(str::trim).filter(|s| !s.is_empty()) {
        Some(sel) => {
            let found = match sel.parse::<usize>() {
                Ok(i) => devices.get(i).and_then(|d| d.as_ref()).map(|_| i),
                Err(_) => {
                    let want = sel.to_lowercase();
                    devices.iter().position(|d| {
                        d.as_ref()
                            .is_some_and(|d| d.name.to_lowercase().contains(&want))
                    })
                }
            };
            found.ok_or_else(|| {
                Error(format!(
                    "no Vulkan compute device matches KRS_VULKAN_DEVICE={sel:?} (devices: {})",
                    if devices.is_empty() {
                        "none".to_string()
                    } else {
                        list()
                    }
                ))
            })
        }
        None => devices
            .iter()
            .enumerate()
            .filter_map(|(i, d)| d.as_ref().map(|d| (rank(d.kind), i)))
            .min()
            .map(|(_, i)| i)
            .ok_or_else(|| {
                Error(if devices.is_empty() {
                    "Vulkan loaded but there is no Vulkan device (no driver installed?)".into()
                } else {
                    format!("no Vulkan device has a compute queue (devices: {})", list())
                })
            }),
    }
}

fn kind_of(t: vk::PhysicalDeviceType) -> DeviceKind {
    match t {
        vk::PhysicalDeviceType::DISCRETE_GPU => DeviceKind::Discrete,
        vk::PhysicalDeviceType::INTEGRATED_GPU => DeviceKind::Integrated,
        vk::PhysicalDeviceType::VIRTUAL_GPU => DeviceKind::Virtual,
        vk::PhysicalDeviceType::CPU => DeviceKind::Cpu,
        _ => DeviceKind::Other,
    }
}

fn memory_type(
    props: &vk::PhysicalDeviceMemoryProperties,
    type_bits: u32,
    want: vk::MemoryPropertyFlags,
) -> Option<u32> {
    (0..props.memory_type_count).find(|&i| {
        type_bits & (1 << i) != 0 && props.memory_types[i as usize].property_flags.contains(want)
    })
}

/// Loads the Vulkan loader and creates an instance.
fn instance() -> Result<(ash::Entry, ash::Instance), Error> {
    // SAFETY: loading the system's Vulkan loader runs its initialisers; that is the
    // documented use of Entry::load, and nothing else in the process loads a different one.
    let entry = unsafe { ash::Entry::load() }
        .map_err(|e| Error(format!("cannot load the Vulkan library ({e})")))?;
    let app = vk::ApplicationInfo::default()
        .application_name(c"krs-engine")
        .api_version(vk::make_api_version(0, 1, 0, 0));
    let create = vk::InstanceCreateInfo::default().application_info(&app);
    // SAFETY: create info and app info outlive the call.
    let instance = unsafe { entry.create_instance(&create, None) }.map_err(|e| {
        if e == vk::Result::ERROR_INCOMPATIBLE_DRIVER {
            // What the loader says when it finds no installable client driver at all.
            Error(format!("Vulkan is installed but no Vulkan driver is ({e})"))
        } else {
            vk_err("vkCreateInstance")(e)
        }
    })?;
    Ok((entry, instance))
}

type Enumerated = (
    Vec<vk::PhysicalDevice>,
    Vec<Option<DeviceInfo>>,
    Vec<Option<usize>>,
);

/// The physical devices, each with its info and compute queue family when it has one.
fn enumerate(instance: &ash::Instance) -> Result<Enumerated, Error> {
    // SAFETY: plain queries on a live instance.
    let physical = unsafe { instance.enumerate_physical_devices() }
        .map_err(vk_err("vkEnumeratePhysicalDevices"))?;
    let mut devices = Vec::with_capacity(physical.len());
    let mut queue_families = Vec::with_capacity(physical.len());
    for (index, &pd) in physical.iter().enumerate() {
        // SAFETY: pd comes from this instance.
        let props = unsafe { instance.get_physical_device_properties(pd) };
        let families = unsafe { instance.get_physical_device_queue_family_properties(pd) };
        let family = families
            .iter()
            .position(|f| f.queue_flags.contains(vk::QueueFlags::COMPUTE));
        queue_families.push(family);
        devices.push(family.map(|_| {
            DeviceInfo {
                index,
                name: props
                    .device_name_as_c_str()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|_| "(unnamed)".into()),
                kind: kind_of(props.device_type),
            }
        }));
    }
    Ok((physical, devices, queue_families))
}

/// The device [`Context::open`] would pick, without creating a logical device or compiling the
/// pipeline (which on a software driver costs tens of MiB and a JIT compile).
pub fn probe(selector: Option<&str>) -> Result<DeviceInfo, Error> {
    let (_entry, instance) = instance()?;
    let chosen = enumerate(&instance).and_then(|(_, devices, _)| {
        let i = select(&devices, selector)?;
        Ok(devices[i].clone().expect("select returns a compute device"))
    });
    // SAFETY: nothing was created from the instance.
    unsafe { instance.destroy_instance(None) };
    chosen
}

impl Context {
    /// Loads Vulkan, picks a device (see [`select`]) and builds the pipeline.
    pub fn open(selector: Option<&str>) -> Result<Context, Error> {
        let (entry, instance) = instance()?;
        // From here on the instance must be destroyed on every error path.
        match Self::open_device(entry.clone(), instance.clone(), selector) {
            Ok(ctx) => Ok(ctx),
            Err(e) => {
                // SAFETY: open_device destroyed everything it created from the instance, and
                // `entry` still keeps the library loaded.
                unsafe { instance.destroy_instance(None) };
                Err(e)
            }
        }
    }

    fn open_device(
        entry: ash::Entry,
        instance: ash::Instance,
        selector: Option<&str>,
    ) -> Result<Context, Error> {
        let (physical, devices, queue_families) = enumerate(&instance)?;
        let chosen = select(&devices, selector)?;
        let pd = physical[chosen];
        let info = devices[chosen]
            .clone()
            .expect("select returns a compute device");
        let family = queue_families[chosen].expect("select returns a compute device") as u32;
        // SAFETY: pd comes from this instance.
        let limits = unsafe { instance.get_physical_device_properties(pd) }.limits;
        let memory = unsafe { instance.get_physical_device_memory_properties(pd) };

        let priorities = [1.0f32];
        let queue_info = vk::DeviceQueueCreateInfo::default()
            .queue_family_index(family)
            .queue_priorities(&priorities);
        let device_info =
            vk::DeviceCreateInfo::default().queue_create_infos(std::slice::from_ref(&queue_info));
        // SAFETY: infos outlive the call; pd belongs to instance.
        let device = unsafe { instance.create_device(pd, &device_info, None) }
            .map_err(vk_err("vkCreateDevice"))?;
        let queue = unsafe { device.get_device_queue(family, 0) };

        let mut ctx = Context {
            _entry: entry,
            instance,
            device,
            queue,
            memory,
            set_layout: vk::DescriptorSetLayout::null(),
            pipeline_layout: vk::PipelineLayout::null(),
            pipelines: [(vk::Pipeline::null(), 0); 2],
            descriptor_pool: vk::DescriptorPool::null(),
            set: vk::DescriptorSet::null(),
            command_pool: vk::CommandPool::null(),
            command_buffer: vk::CommandBuffer::null(),
            fence: vk::Fence::null(),
            buffers: Default::default(),
            max_groups_x: limits.max_compute_work_group_count[0].min(65_535),
            max_out_floats: (MAX_OUT_BYTES.min(limits.max_storage_buffer_range as u64) / 4)
                as usize,
            info,
        };
        match ctx.build(family) {
            Ok(()) => Ok(ctx),
            Err(e) => {
                // SAFETY: destroy_device_objects only destroys non-null handles it owns.
                unsafe { ctx.destroy_device_objects() };
                std::mem::forget(ctx);
                Err(e)
            }
        }
    }

    fn build(&mut self, family: u32) -> Result<(), Error> {
        let d = &self.device;
        let bindings: Vec<_> = (0..BINDINGS as u32)
            .map(|b| {
                vk::DescriptorSetLayoutBinding::default()
                    .binding(b)
                    .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                    .descriptor_count(1)
                    .stage_flags(vk::ShaderStageFlags::COMPUTE)
            })
            .collect();
        // SAFETY (this whole function): every create info outlives its call, and every handle
        // is stored in self at once so that destroy_device_objects can free it on error.
        self.set_layout = unsafe {
            d.create_descriptor_set_layout(
                &vk::DescriptorSetLayoutCreateInfo::default().bindings(&bindings),
                None,
            )
        }
        .map_err(vk_err("vkCreateDescriptorSetLayout"))?;
        let layouts = [self.set_layout];
        self.pipeline_layout = unsafe {
            d.create_pipeline_layout(
                &vk::PipelineLayoutCreateInfo::default().set_layouts(&layouts),
                None,
            )
        }
        .map_err(vk_err("vkCreatePipelineLayout"))?;
        for (i, (spirv, registers)) in SPIRV.into_iter().enumerate() {
            let words = ash::util::read_spv(&mut std::io::Cursor::new(spirv))
                .map_err(|e| Error(format!("embedded SPIR-V is malformed: {e}")))?;
            let shader = unsafe {
                d.create_shader_module(&vk::ShaderModuleCreateInfo::default().code(&words), None)
            }
            .map_err(vk_err("vkCreateShaderModule"))?;
            let stage = vk::PipelineShaderStageCreateInfo::default()
                .stage(vk::ShaderStageFlags::COMPUTE)
                .module(shader)
                .name(c"main");
            let info = vk::ComputePipelineCreateInfo::default()
                .stage(stage)
                .layout(self.pipeline_layout);
            let pipelines =
                unsafe { d.create_compute_pipelines(vk::PipelineCache::null(), &[info], None) };
            // The module is only needed while the pipeline is created.
            unsafe { d.destroy_shader_module(shader, None) };
            let pipeline = pipelines
                .map_err(|(_, e)| vk_err("vkCreateComputePipelines")(e))?
                .into_iter()
                .next()
                .ok_or_else(|| Error("vkCreateComputePipelines returned no pipeline".into()))?;
            self.pipelines[i] = (pipeline, registers);
        }

        let sizes = [vk::DescriptorPoolSize::default()
            .ty(vk::DescriptorType::STORAGE_BUFFER)
            .descriptor_count(BINDINGS as u32)];
        self.descriptor_pool = unsafe {
            d.create_descriptor_pool(
                &vk::DescriptorPoolCreateInfo::default()
                    .max_sets(1)
                    .pool_sizes(&sizes),
                None,
            )
        }
        .map_err(vk_err("vkCreateDescriptorPool"))?;
        self.set = unsafe {
            d.allocate_descriptor_sets(
                &vk::DescriptorSetAllocateInfo::default()
                    .descriptor_pool(self.descriptor_pool)
                    .set_layouts(&layouts),
            )
        }
        .map_err(vk_err("vkAllocateDescriptorSets"))?[0];

        self.command_pool = unsafe {
            d.create_command_pool(
                &vk::CommandPoolCreateInfo::default()
                    .queue_family_index(family)
                    .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER),
                None,
            )
        }
        .map_err(vk_err("vkCreateCommandPool"))?;
        self.command_buffer = unsafe {
            d.allocate_command_buffers(
                &vk::CommandBufferAllocateInfo::default()
                    .command_pool(self.command_pool)
                    .level(vk::CommandBufferLevel::PRIMARY)
                    .command_buffer_count(1),
            )
        }
        .map_err(vk_err("vkAllocateCommandBuffers"))?[0];
        self.fence = unsafe { d.create_fence(&vk::FenceCreateInfo::default(), None) }
            .map_err(vk_err("vkCreateFence"))?;
        // Every binding needs a buffer before the first dispatch.
        for b in 0..BINDINGS {
            self.ensure(b, 4)?;
        }
        Ok(())
    }

    /// Makes buffer `binding` hold at least `bytes`: kept if large enough, else replaced by one
    /// of the next power of two (at most what the caller bounded `bytes` by).
    fn ensure(&mut self, binding: usize, bytes: u64) -> Result<(), Error> {
        if self.buffers[binding]
            .as_ref()
            .is_some_and(|b| b.bytes >= bytes)
        {
            return Ok(());
        }
        let size = bytes.next_power_of_two().max(MIN_BUFFER_BYTES);
        let size = if binding == OUT {
            size.min((self.max_out_floats * 4) as u64).max(bytes)
        } else {
            size
        };
        if let Some(old) = self.buffers[binding].take() {
            // SAFETY: the fence was waited on after the last submission, so the GPU no longer
            // uses the old buffer.
            unsafe { self.free(old) };
        }
        let d = &self.device;
        // SAFETY: create info outlives the call; on error the partial objects are freed.
        let buffer = unsafe {
            d.create_buffer(
                &vk::BufferCreateInfo::default()
                    .size(size)
                    .usage(vk::BufferUsageFlags::STORAGE_BUFFER)
                    .sharing_mode(vk::SharingMode::EXCLUSIVE),
                None,
            )
        }
        .map_err(vk_err("vkCreateBuffer"))?;
        let req = unsafe { d.get_buffer_memory_requirements(buffer) };
        let coherent =
            vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_COHERENT;
        // The host reads the output back: uncached memory would make that read crawl.
        let preferred = if binding == OUT {
            coherent | vk::MemoryPropertyFlags::HOST_CACHED
        } else {
            coherent | vk::MemoryPropertyFlags::DEVICE_LOCAL
        };
        let Some(type_index) = memory_type(&self.memory, req.memory_type_bits, preferred)
            .or_else(|| memory_type(&self.memory, req.memory_type_bits, coherent))
        else {
            unsafe { d.destroy_buffer(buffer, None) };
            return Err(Error(
                "Vulkan device has no host-visible coherent memory for storage buffers".into(),
            ));
        };
        let memory = match unsafe {
            d.allocate_memory(
                &vk::MemoryAllocateInfo::default()
                    .allocation_size(req.size)
                    .memory_type_index(type_index),
                None,
            )
        } {
            Ok(m) => m,
            Err(e) => {
                unsafe { d.destroy_buffer(buffer, None) };
                return Err(vk_err("vkAllocateMemory")(e));
            }
        };
        let mapped = unsafe { d.bind_buffer_memory(buffer, memory, 0) }.and_then(|()| unsafe {
            d.map_memory(memory, 0, vk::WHOLE_SIZE, vk::MemoryMapFlags::empty())
        });
        let ptr = match mapped {
            Ok(p) => p,
            Err(e) => {
                unsafe {
                    d.destroy_buffer(buffer, None);
                    d.free_memory(memory, None);
                }
                return Err(vk_err("vkBindBufferMemory/vkMapMemory")(e));
            }
        };
        let info = [vk::DescriptorBufferInfo::default()
            .buffer(buffer)
            .offset(0)
            .range(vk::WHOLE_SIZE)];
        let write = vk::WriteDescriptorSet::default()
            .dst_set(self.set)
            .dst_binding(binding as u32)
            .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
            .buffer_info(&info);
        // SAFETY: the set is not in use by a pending submission (see above).
        unsafe { d.update_descriptor_sets(&[write], &[]) };
        self.buffers[binding] = Some(Buffer {
            buffer,
            memory,
            ptr,
            bytes: size,
        });
        Ok(())
    }

    unsafe fn free(&self, b: Buffer) {
        self.device.destroy_buffer(b.buffer, None);
        // Freeing mapped memory unmaps it.
        self.device.free_memory(b.memory, None);
    }

    /// Copies `data` to the start of buffer `binding`, growing it first.
    pub fn upload<T: Copy>(&mut self, binding: usize, data: &[T]) -> Result<(), Error> {
        let bytes = std::mem::size_of_val(data);
        self.ensure(binding, bytes as u64)?;
        let b = self.buffers[binding].as_ref().expect("ensured");
        // SAFETY: the mapping is at least `bytes` long and not read by the GPU until the next
        // submission; T is plain old data (u32/f32 arrays).
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr() as *const u8, b.ptr as *mut u8, bytes)
        };
        Ok(())
    }

    /// Runs `jobs` job rows (already uploaded) over `longest` samples at most, writing
    /// `out_floats` values, and returns them. `registers` is the most any job's program
    /// needs; it picks the smallest shader variant that holds them. Blocks until the device
    /// is done.
    pub fn dispatch(
        &mut self,
        jobs: u32,
        longest: usize,
        out_floats: usize,
        registers: usize,
    ) -> Result<&[f32], Error> {
        let pipeline = self
            .pipelines
            .iter()
            .find(|&&(_, r)| r >= registers)
            .map(|&(p, _)| p)
            .ok_or_else(|| Error(format!("no shader variant has {registers} registers")))?;
        assert!(out_floats <= self.max_out_floats);
        self.ensure(OUT, (out_floats * 4) as u64)?;
        let groups_x = (longest.div_ceil(WORKGROUP as usize) as u32).clamp(1, self.max_groups_x);
        let d = &self.device;
        let cb = self.command_buffer;
        // SAFETY: the command buffer is idle (the previous fence was waited on) and every
        // bound object is alive.
        unsafe {
            d.reset_command_buffer(cb, vk::CommandBufferResetFlags::empty())
                .map_err(vk_err("vkResetCommandBuffer"))?;
            d.begin_command_buffer(
                cb,
                &vk::CommandBufferBeginInfo::default()
                    .flags(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT),
            )
            .map_err(vk_err("vkBeginCommandBuffer"))?;
            d.cmd_bind_pipeline(cb, vk::PipelineBindPoint::COMPUTE, pipeline);
            d.cmd_bind_descriptor_sets(
                cb,
                vk::PipelineBindPoint::COMPUTE,
                self.pipeline_layout,
                0,
                &[self.set],
                &[],
            );
            d.cmd_dispatch(cb, groups_x, jobs, 1);
            // Shader writes must be visible to the host read after the fence.
            let barrier = vk::MemoryBarrier::default()
                .src_access_mask(vk::AccessFlags::SHADER_WRITE)
                .dst_access_mask(vk::AccessFlags::HOST_READ);
            d.cmd_pipeline_barrier(
                cb,
                vk::PipelineStageFlags::COMPUTE_SHADER,
                vk::PipelineStageFlags::HOST,
                vk::DependencyFlags::empty(),
                &[barrier],
                &[],
                &[],
            );
            d.end_command_buffer(cb)
                .map_err(vk_err("vkEndCommandBuffer"))?;
            let cbs = [cb];
            let submit = vk::SubmitInfo::default().command_buffers(&cbs);
            d.queue_submit(self.queue, &[submit], self.fence)
                .map_err(vk_err("vkQueueSubmit"))?;
            d.wait_for_fences(&[self.fence], true, FENCE_TIMEOUT.as_nanos() as u64)
                .map_err(vk_err("vkWaitForFences"))?;
            d.reset_fences(&[self.fence])
                .map_err(vk_err("vkResetFences"))?;
        }
        let b = self.buffers[OUT].as_ref().expect("ensured");
        // SAFETY: the device finished writing (fence + barrier), the memory is host-coherent,
        // and the mapping holds at least out_floats f32s.
        Ok(unsafe { std::slice::from_raw_parts(b.ptr as *const f32, out_floats) })
    }

    unsafe fn destroy_device_objects(&mut self) {
        let d = &self.device;
        for b in self.buffers.iter_mut() {
            if let Some(b) = b.take() {
                d.destroy_buffer(b.buffer, None);
                d.free_memory(b.memory, None);
            }
        }
        if self.fence != vk::Fence::null() {
            d.destroy_fence(self.fence, None);
        }
        if self.command_pool != vk::CommandPool::null() {
            d.destroy_command_pool(self.command_pool, None);
        }
        if self.descriptor_pool != vk::DescriptorPool::null() {
            d.destroy_descriptor_pool(self.descriptor_pool, None);
        }
        for &(p, _) in &self.pipelines {
            if p != vk::Pipeline::null() {
                d.destroy_pipeline(p, None);
            }
        }
        if self.pipeline_layout != vk::PipelineLayout::null() {
            d.destroy_pipeline_layout(self.pipeline_layout, None);
        }
        if self.set_layout != vk::DescriptorSetLayout::null() {
            d.destroy_descriptor_set_layout(self.set_layout, None);
        }
        d.destroy_device(None);
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: no submission is pending (dispatch always waits for its fence, and a context
        // whose wait failed is forgotten instead of dropped, see gpu/mod.rs).
        unsafe {
            self.destroy_device_objects();
            self.instance.destroy_instance(None);
        }
    }
}
